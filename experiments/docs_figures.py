"""Regenerate the figures the docs show (README.md, docs/report.md), from the commands' own code.

    python3 experiments/docs_figures.py

docs/img/split_digits_usage.png is `usage.png` of any `partc report` of
specs/split_digits.part (the structure figures need only the spec): the same
function, `partc.report.figures.usage_map`, on the same IR.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import partc  # noqa: E402
from partc.report import figures  # noqa: E402
from partc.report.structure import structure  # noqa: E402


def main() -> None:
    out = ROOT / "docs" / "img" / "split_digits_usage.png"
    figures.save(figures.usage_map(structure(partc.load(ROOT / "specs" / "split_digits.part"))), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
