"""Statistics over seeds: means, spreads and paired t intervals, so a claim says how sure it is.

A neutral module (plain floats in, plain dicts out), read by the train stage
(a seed group's table) and the report (comparisons against references and
baselines). Intervals are Student t intervals of the mean: for a paired
comparison, of the mean of the per-seed differences (same seed on both
sides). With n = 3 the 95% t quantile is 4.30, so only a large and
consistent difference excludes zero; that is the point: a verdict is given
only when the interval excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

LEVEL = 0.95  # two-sided confidence level of every interval partc reports


def mean_std(values: Iterable[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1); None where undefined (no values; one value for the std)."""
    values = list(values)
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided `level` quantile of Student's t with df degrees of freedom (4.303 for df=2 at 95%)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def summary(values: Iterable[float], level: float = LEVEL) -> dict[str, Any]:
    """{n, mean, std, ci: [low, high] | None, values}: a t interval of the mean (None with fewer than 2 values)."""
    values = [float(v) for v in values]
    mean, std = mean_std(values)
    ci = None
    if std is not None:
        half = t_quantile(len(values) - 1, level) * std / math.sqrt(len(values))
        ci = [mean - half, mean + half]
    return {"n": len(values), "mean": mean, "std": std, "ci": ci, "values": values}


def direction(ci: list[float] | None) -> str | None:
    """"above" or "below" zero when the interval excludes zero, "unclear" when it holds it, None without one."""
    if ci is None:
        return None
    if ci[0] > 0:
        return "above"
    if ci[1] < 0:
        return "below"
    return "unclear"


def paired(here: Mapping[Any, float | None], there: Mapping[Any, float | None], level: float = LEVEL) -> dict[str, Any]:
    """The per-key differences here - there (keys: seeds present on both sides), their summary and direction."""
    keys = sorted(k for k in here if k in there and here[k] is not None and there[k] is not None)
    differences = [float(here[k]) - float(there[k]) for k in keys]
    out = summary(differences, level)
    out.update(pairs=keys, direction=direction(out["ci"]), level=level)
    return out


def undetected(n: int) -> str:
    """The words for an interval that holds zero, or for no interval at all."""
    if n < 2:
        return "no interval from one pair of runs, so no verdict (train a seed group: --seeds 1,2,3)"
    return f"no detectable difference at n={n}"
