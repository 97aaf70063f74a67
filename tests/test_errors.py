"""Invalid specs: each tests/cases/errors/NAME.part fails with exactly NAME.err.

NAME.err holds the full `render()` of the error (`file:line:col: error: ...`,
the source line, the caret and the hint), with the spec's path relative to
the repository root. `pytest --update-expected` rewrites them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import partc
from partc.cli import main
from partc.errors import PartError, SpecFileError

from .conftest import ROOT

CASES = sorted((ROOT / "tests" / "cases" / "errors").glob("*.part"))


def _relative(case: Path) -> str:
    return case.relative_to(ROOT).as_posix()


def test_there_are_enough_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_error_case(case, in_root, expect):
    with pytest.raises(PartError) as info:
        partc.load(_relative(case))
    rendered = info.value.render()
    first = rendered.splitlines()[0]
    assert first.startswith(f"{_relative(case)}:"), first
    assert "^" in rendered and "hint: " in rendered, "every spec error shows a caret and a hint"
    expect(case.with_suffix(".err"), rendered + "\n")


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_error_case_cli(case, in_root, capsys):
    assert main(["check", _relative(case)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    expected = case.with_suffix(".err")
    if expected.exists():
        assert err == expected.read_text(encoding="utf-8")


# ---- spec files that cannot be read: the paths differ per run, so inline ----

def _cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    return err


def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.part"
    with pytest.raises(SpecFileError) as info:
        partc.load(missing)
    assert info.value.render() == (
        f"error: spec file '{missing}' does not exist\nhint: check the path; specs end in .part"
    )
    assert _cli_error(["check", str(missing)], capsys) == info.value.render() + "\n"


def test_not_utf8(tmp_path, capsys):
    spec = tmp_path / "latin1.part"
    spec.write_bytes("network n {\n  # café\n}\n".encode("latin-1"))
    with pytest.raises(SpecFileError) as info:
        partc.load(spec)
    assert info.value.render() == (
        f"{spec}:2:8: error: spec file is not valid UTF-8 (byte 0xe9)\n"
        "      # caf\ufffd\n"
        "           ^\n"
        "hint: save the file as UTF-8"
    )
    assert _cli_error(["check", str(spec)], capsys) == info.value.render() + "\n"


def test_directory(tmp_path, capsys):
    with pytest.raises(SpecFileError) as info:
        partc.load(tmp_path)
    assert info.value.render() == f"error: '{tmp_path}' is a directory, not a spec file\nhint: name a .part file inside it"
    assert _cli_error(["graph", str(tmp_path), "-o", str(tmp_path / "x.dot")], capsys) == info.value.render() + "\n"


def test_byte_order_mark_is_accepted(tmp_path):
    spec = tmp_path / "bom.part"
    text = (ROOT / "specs" / "split_digits.part").read_text(encoding="utf-8")
    spec.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert partc.load(spec).name == "split_digits"


def test_several_errors_are_reported_together(in_root):
    spec = """network n {
  input x: float[1, 8, 8]
  level l1 = 4 x conv(8, pad=1)
  task a { data mnist(classes=2) path random(2) }
  task b { data digits(classes=2) path l7[0] random(2) }
}
"""
    with pytest.raises(PartError) as info:
        partc.loads(spec, "multi.part")
    rendered = info.value.render()
    assert "multi.part:4:17: error: unknown data source 'mnist'" in rendered
    assert "multi.part:5:40: error: task 'b' routes through unknown level 'l7'" in rendered
    assert rendered.endswith("2 errors")
