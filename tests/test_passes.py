"""Each pass on data-driven cases (mypyc's `[case]` style): a spec, then the IR dump after that pass, or its errors.

`tests/cases/passes/PASS.test` holds the cases of pass PASS; each runs the
pipeline up to and including PASS (`check(tree, until=PASS)`) and compares
`partc.ir_text.dump` of the result (or the rendered errors) with the case's
`[out]` section. `pytest --update-expected` rewrites the `[out]` sections.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from partc.errors import PartError
from partc.ir_text import dump
from partc.language import parse
from partc.passes import PASSES, check

CASES = Path(__file__).resolve().parent / "cases" / "passes"
_CASE = re.compile(r"^\[case (\w+)\]\n(.*?)^\[out\]\n(.*?)(?=^\[case |\Z)", re.S | re.M)


def read_cases(path: Path) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in _CASE.finditer(path.read_text(encoding="utf-8"))]


def run_case(pass_name: str, name: str, spec: str) -> str:
    file = f"{name}.part"
    try:
        return dump(check(parse(spec, file), until=pass_name))
    except PartError as e:
        return e.render() + "\n"


def all_cases():
    for path in sorted(CASES.glob("*.test")):
        for name, spec, _ in read_cases(path):
            yield pytest.param(path, name, spec, id=f"{path.stem}-{name}")


def test_every_pass_has_cases():
    names = [name for name, _ in PASSES if name != "fingerprint"]  # a hash: its tests are in test_golden
    assert sorted(p.stem for p in CASES.glob("*.test")) == sorted(names)


@pytest.mark.parametrize(("path", "name", "spec"), list(all_cases()))
def test_pass_case(path, name, spec, request):
    actual = run_case(path.stem, name, spec)
    if request.config.getoption("--update-expected"):
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(rf"(^\[case {name}\]\n.*?^\[out\]\n)(.*?)(?=^\[case |\Z)", re.S | re.M)
        text = pattern.sub(lambda m: m.group(1) + actual + "\n", text, count=1)
        path.write_text(text, encoding="utf-8")
        return
    expected = next(out for case, _, out in read_cases(path) if case == name)
    assert actual.rstrip("\n") == expected.rstrip("\n"), f"{path.name} [case {name}] differs (pytest --update-expected)"
