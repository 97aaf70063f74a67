"""Golden outputs: `partc check` and `partc check --dump` of every valid spec.

tests/golden/NAME.summary and NAME.dump hold the expected text of the
shipped specs (specs/) and the test specs (tests/cases/specs/); pytest
--update-expected rewrites them. Paths are drawn from the spec's seed by
SHA-256, so the outputs are the same on every machine and Python version.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import partc
from partc.cli import main

from .conftest import ROOT

SPECS = sorted((ROOT / "specs").glob("*.part")) + sorted((ROOT / "tests" / "cases" / "specs").glob("*.part"))
GOLDEN = ROOT / "tests" / "golden"


def _cli_output(argv, capsys) -> str:
    """stdout of a command; its stderr must be the spec's warnings, rendered, and nothing else."""
    assert main(argv) == 0
    out, err = capsys.readouterr()
    warnings = partc.load(argv[-1]).warnings
    assert err == "".join(w.render() + "\n" for w in warnings)
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_summary(spec, in_root, capsys, expect):
    out = _cli_output(["check", spec.relative_to(ROOT).as_posix()], capsys)
    expect(GOLDEN / f"{spec.stem}.summary", out)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_dump(spec, in_root, capsys, expect):
    out = _cli_output(["check", "--dump", spec.relative_to(ROOT).as_posix()], capsys)
    expect(GOLDEN / f"{spec.stem}.dump", out)


def test_every_golden_file_has_a_spec():
    names = {p.stem for p in SPECS}
    orphans = sorted(p.name for p in GOLDEN.iterdir() if p.stem not in names)
    assert orphans == [], "golden files of specs that no longer exist"


# ---- determinism of the path draw ----

@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_loading_twice_gives_the_same_paths(spec):
    first, second = partc.load(spec), partc.load(spec)
    assert {t: x.path for t, x in first.tasks.items()} == {t: x.path for t, x in second.tasks.items()}


def _with_extra_task(text: str, task: str) -> str:
    """Insert a task statement just before the network's closing brace."""
    end = text.rstrip().rindex("}")
    return text[:end] + f"  {task}\n" + text[end:]


@pytest.mark.parametrize("name", ["split_digits", "cifar100_part", "mixed_inputs"])
def test_adding_a_task_keeps_other_tasks_paths(name):
    text = (ROOT / "specs" / f"{name}.part").read_text(encoding="utf-8")
    before = partc.loads(text, name)
    source = next(iter(before.tasks.values())).data.source
    data = {"digits": "digits(classes=[0, 9])", "cifar100": 'cifar100("data", classes=[5, 50])'}[source]
    after = partc.loads(_with_extra_task(text, f"task newcomer {{ data {data} path random(2) }}"), name)
    assert "newcomer" in after.tasks
    for task, old in before.tasks.items():
        assert after.tasks[task].path == old.path, task


def test_another_seed_gives_other_paths():
    text = (ROOT / "specs" / "split_digits.part").read_text(encoding="utf-8")
    a = partc.loads(text, "a")
    b = partc.loads(re.sub(r"seed \d+", "seed 8", text), "b")
    assert {t: x.path for t, x in a.tasks.items()} != {t: x.path for t, x in b.tasks.items()}


def test_dump_does_not_depend_on_the_hash_seed():
    """str hashing differs per process unless PYTHONHASHSEED is fixed: the dump must not care."""
    spec = "tests/cases/specs/constrained_draws.part"
    outputs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        result = subprocess.run([sys.executable, "-m", "partc", "check", "--dump", spec], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=True)
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] == (GOLDEN / "constrained_draws.dump").read_text(encoding="utf-8")
