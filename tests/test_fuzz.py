"""Mutation fuzzing: any text near a valid spec is checked or refused cleanly.

Valid specs (specs/*.part, tests/cases/specs/*.part) are mutated token- and
character-wise: delete, duplicate or swap tokens; delete, insert or replace
characters; truncate. Every outcome must be a checked network whose IR
verifies, or a `PartError` whose render() starts with `file:line:col` when
it has a location -- never any other exception. Deterministic (derandomize).
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import partc
from partc.cli import main
from partc.errors import ErrorGroup, PartError
from partc.ir_text import dump
from partc.passes import verify
from partc.summary import summary

from .conftest import ROOT

SEEDS = {
    p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
    for p in sorted((ROOT / "specs").glob("*.part")) + sorted((ROOT / "tests" / "cases" / "specs").glob("*.part"))
}

_TOKEN = re.compile(r'\s+|#[^\n]*|//[^\n]*|"[^"\n]*"|[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|\.\.|.', re.S)
# characters worth inserting: the language's own, and a few it never uses
_CHARS = list("{}()[],;:=+-.x0123456789 \n\"#/") + ["$", "\t", "\x00", "\u00e9", "\u2028", "\ufeff"]

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


@st.composite
def mutated_specs(draw) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    text = SEEDS[name]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["del_tok", "dup_tok", "swap_tok", "del_char", "ins_char", "rep_char", "truncate"]))
        toks = tokens(text)
        if op.endswith("_tok") and len(toks) > 1:
            i = draw(st.integers(0, len(toks) - 1))
            if op == "del_tok":
                del toks[i]
            elif op == "dup_tok":
                toks.insert(i, toks[i])
            else:
                j = draw(st.integers(0, len(toks) - 1))
                toks[i], toks[j] = toks[j], toks[i]
            text = "".join(toks)
        elif op == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif text:
            i = draw(st.integers(0, len(text) - 1))
            if op == "del_char":
                text = text[:i] + text[i + 1 :]
            elif op == "ins_char":
                text = text[:i] + draw(st.sampled_from(_CHARS)) + text[i:]
            else:
                text = text[:i] + draw(st.sampled_from(_CHARS)) + text[i + 1 :]
    return name, text


def assert_clean_outcome(text: str, file: str = "fuzz.part") -> None:
    try:
        net = partc.loads(text, file)
    except PartError as e:
        for error in e.errors if isinstance(e, ErrorGroup) else [e]:
            rendered = error.render()
            if error.loc is not None:
                assert rendered.startswith(f"{file}:{error.loc.line}:{error.loc.column}: error: "), rendered
                assert error.loc.line >= 1 and error.loc.column >= 1, rendered
        return
    assert verify(net) == []
    summary(net)
    dump(net)


def test_seed_specs_are_valid():
    assert len(SEEDS) >= 3
    for name, text in SEEDS.items():
        assert verify(partc.loads(text, name)) == []


@FUZZ
@given(mutated_specs())
def test_mutated_spec_checks_or_fails_cleanly(case):
    _name, text = case
    assert_clean_outcome(text)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                   HealthCheck.function_scoped_fixture])
@given(mutated_specs())
def test_mutated_spec_through_the_cli(tmp_path, capsys, case):
    _name, text = case
    spec = tmp_path / "fuzz.part"
    spec.write_text(text, encoding="utf-8", errors="surrogatepass")
    code = main(["check", str(spec)])
    out, err = capsys.readouterr()
    assert code in (0, 2)
    assert "Traceback" not in err
    assert (code == 0) == ("error:" not in err)  # a spec that checks may still print warnings
    assert (code == 0) <= all(line.startswith(("...", "    ", "hint: ")) or ": warning: " in line
                              for line in err.splitlines())


@FUZZ
@given(mutated_specs())
def test_mutated_spec_formats_faithfully(case):
    """Whatever parses, `partc fmt` formats idempotently, and the formatted text checks to the same outcome."""
    from partc.language import parse
    from partc.language.printer import format_spec

    _name, text = case
    try:
        tree = parse(text, "fuzz.part")
    except PartError:
        return
    once = format_spec(tree)
    assert format_spec(parse(once, "fuzz.part")) == once

    def outcome(source: str):
        try:
            return partc.loads(source, "fuzz.part").spec_hash
        except PartError as e:
            return [err.message for err in (e.errors if isinstance(e, ErrorGroup) else [e])]

    assert outcome(once) == outcome(text)
