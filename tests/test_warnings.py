"""`partc check` warnings: printed on stderr with exit 0, errors under --strict, silent on `partc.load`."""

from __future__ import annotations

import partc
from partc.cli import main
from partc.errors import SpecWarning

SPEC = """network n {
  input x: float[1, 8, 8]
  input spare: float[4]
  segment block(c, k) { conv(c, k=3, pad=1); relu }
  level l1 = 4 x block(4, 5) then avgpool
  task a { data digits(classes=[0]) path l1[0, 1] }
  task b { data digits(classes=[2, 3]) path l1[0, 1] }
}
"""
EXPECTED = [
    "level 'l1': segments 2, 3 of 0..3 are on no task's path",
    "input 'spare' is read by no task",
    "segment template 'block' never uses its parameter 'k'",
    "task 'a' has a single class, so its loss is always 0 and it learns nothing",
    "task 'b' takes the same route as task 'a' (the same segments at every level)",
]


def test_load_keeps_warnings_on_the_network_in_source_order(capsys):
    net = partc.loads(SPEC, "w.part")
    assert sorted(w.message for w in net.warnings) == sorted(EXPECTED)
    assert [w.loc.line for w in net.warnings] == sorted(w.loc.line for w in net.warnings)
    assert all(isinstance(w, SpecWarning) and w.render().startswith(f"w.part:{w.loc.line}:") for w in net.warnings)
    assert capsys.readouterr() == ("", "")  # library use prints nothing


def test_check_prints_them_and_succeeds(tmp_path, capsys):
    spec = tmp_path / "w.part"
    spec.write_text(SPEC)
    assert main(["check", str(spec)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("network n")
    for message in EXPECTED:
        assert f": warning: {message}\n" in err
    assert "error" not in err


def test_strict_makes_them_errors(tmp_path, capsys):
    spec = tmp_path / "w.part"
    spec.write_text(SPEC)
    assert main(["check", "--strict", str(spec)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "warning" not in err
    for message in EXPECTED:
        assert f": error: {message}\n" in err
    assert err.rstrip().endswith(f"{len(EXPECTED)} errors")


def test_a_clean_spec_passes_strict(tmp_path, capsys):
    spec = tmp_path / "clean.part"
    spec.write_text(SPEC.replace("  input spare: float[4]\n", "").replace("block(c, k)", "block(c)")
                    .replace("block(4, 5)", "block(4)").replace("4 x block", "2 x block")
                    .replace("classes=[0]", "classes=[0, 1]").replace("path l1[0, 1] }\n  task b", "path l1[0] }\n  task b"))
    assert main(["check", "--strict", str(spec)]) == 0
    assert capsys.readouterr().err == ""


def test_task_names_equal_but_for_case_are_warned_about():
    net = partc.loads(SPEC.replace("classes=[0]", "classes=[0, 1]").replace(
        "  task b", "  task A { data digits(classes=[4, 5]) path l1[0] }\n  task b"), "w.part")
    (warning,) = [w for w in net.warnings if "case" in w.message]
    assert warning.message == "task 'A' differs from task 'a' only in case" and warning.loc.line == 7
    assert "A.onnx" in warning.hint and "case-insensitive" in warning.hint
