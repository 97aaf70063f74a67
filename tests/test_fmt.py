"""`partc fmt`: canonical layout, comments kept; idempotent and faithful on every spec we have.

Like sqlglot's identity fixtures: every shipped spec, every valid test
spec and every error case that parses goes through the printer, must come
back unchanged when formatted again, and must mean what it meant (the same
`partc check` output for valid specs, the same error for invalid ones).
`tests/cases/fmt/NAME.part` -> `NAME.fmt` pins the layout rules down
(`pytest --update-expected` rewrites them).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import partc
from partc.errors import PartError
from partc.language import parse
from partc.language.printer import format_spec, scan_comments
from partc.summary import summary

ROOT = Path(__file__).resolve().parent.parent
VALID = sorted((ROOT / "specs").glob("*.part")) + sorted((ROOT / "tests" / "cases" / "specs").glob("*.part"))
ERROR_CASES = sorted((ROOT / "tests" / "cases" / "errors").glob("*.part"))
FIXTURES = sorted((ROOT / "tests" / "cases" / "fmt").glob("*.part"))


def fmt(text: str, file: str = "spec.part") -> str:
    return format_spec(parse(text, file))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_specs_are_idempotent_and_faithful(path):
    text = path.read_text(encoding="utf-8")
    once = fmt(text, str(path))
    assert fmt(once, str(path)) == once
    before, after = partc.loads(text, str(path)), partc.loads(once, str(path))
    assert summary(after) == summary(before) and after.spec_hash == before.spec_hash
    assert [c.text for c in scan_comments(once)] == [c.text for c in scan_comments(text)]  # every comment kept


def _parses(path: Path) -> bool:
    try:
        parse(path.read_text(encoding="utf-8"), str(path))
        return True
    except PartError:
        return False


@pytest.mark.parametrize("path", [p for p in ERROR_CASES if _parses(p)], ids=lambda p: p.stem)
def test_a_spec_with_errors_formats_to_the_same_error(path):
    text = path.read_text(encoding="utf-8")
    once = fmt(text, str(path))
    assert fmt(once, str(path)) == once
    messages = []
    for version in (text, once):
        with pytest.raises(PartError) as e:
            partc.loads(version, str(path))
        messages.append([getattr(err, "message", str(err)) for err in getattr(e.value, "errors", [e.value])])
    assert messages[0] == messages[1]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_layout_fixtures(path, expect):
    expect(path.with_suffix(".fmt"), fmt(path.read_text(encoding="utf-8"), str(path)))


def test_the_shipped_specs_are_in_canonical_form():
    result = subprocess.run([sys.executable, "-m", "partc", "fmt", "--check", *map(str, VALID)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _spaces_outside_strings(line: str, widths: list[int]) -> str:
    """`line` with each run of spaces between tokens (not in strings or comments) resized."""
    out, i, k, in_string = [], 0, 0, False
    while i < len(line):
        ch = line[i]
        if ch == '"':
            in_string = not in_string
        if not in_string and (ch == "#" or line.startswith("//", i)):
            out.append(line[i:])
            break
        if ch == " " and not in_string:
            j = i
            while j < len(line) and line[j] == " ":
                j += 1
            out.append(" " * widths[k % len(widths)])
            k += 1
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(VALID), st.lists(st.integers(1, 4), min_size=1, max_size=6))
def test_spacing_within_lines_never_changes_the_result(path, widths):
    text = path.read_text(encoding="utf-8")
    variant = "\n".join(_spaces_outside_strings(line, widths) for line in text.split("\n"))
    assert fmt(variant, str(path)) == fmt(text, str(path))


# ---- the command ----

def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "partc", "fmt", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_check_and_in_place(tmp_path):
    messy = tmp_path / "messy.part"
    messy.write_text((ROOT / "tests/cases/fmt/comments_and_blocks.part").read_text())
    messy.chmod(0o640)
    result = run("--check", str(messy))
    assert result.returncode == 1 and f"would reformat {messy}" in result.stderr
    assert run(str(messy)).stdout == (ROOT / "tests/cases/fmt/comments_and_blocks.fmt").read_text()
    assert run("-i", str(messy)).returncode == 0
    assert messy.read_text() == (ROOT / "tests/cases/fmt/comments_and_blocks.fmt").read_text()
    assert stat.S_IMODE(messy.stat().st_mode) == 0o640  # permissions kept
    assert run("--check", str(messy)).returncode == 0
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left


def test_errors_leave_the_file_alone(tmp_path):
    broken = tmp_path / "broken.part"
    broken.write_text("network n { input x: float[1, 8, 8] level l = 2 x conv(4 }\n")
    result = run("-i", str(broken))
    assert result.returncode == 2 and "broken.part:1:" in result.stderr and "Traceback" not in result.stderr
    assert broken.read_text() == "network n { input x: float[1, 8, 8] level l = 2 x conv(4 }\n"
    assert run(str(tmp_path / "missing.part")).returncode == 2
    two = run(str(broken), str(broken))
    assert two.returncode == 2 and "-i" in two.stderr


def test_numbers_and_comments_come_back_as_written():
    text = 'network n { input x: float[1, 8, 8] # in\n level l = 2 x conv(4) task a { data digits(classes=2) ' \
           'path random(1) weight 2.50 } train { optimizer adam(lr=2e-3) } // end\n}\n'
    out = fmt(text)
    assert "weight 2.50" in out and "lr=2e-3" in out
    assert "  input x: float[1, 8, 8]  # in\n" in out and "// end" in out
