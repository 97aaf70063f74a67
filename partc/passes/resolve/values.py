"""Resolve pass, values: AST values -> the plain Python values the IR holds.

The IR never holds AST nodes: `0..9` becomes a list of ints, an enum word
its name, a call (`adam(lr=1e-3)`) a dict; a float stays the `ast.Float`
the parser made (a float in every respect, pickled as a plain one, that
prints as written). Names used
as values are resolved here: a template parameter inside a template, an
error anywhere else.
"""

from __future__ import annotations

from typing import Any

from partc.errors import PartError, SpecError, closest, valid_names
from partc.ir import ParamRef
from partc.language import ast


def plain(value: Any) -> Any:
    """An AST value as plain data: calls become {'name': ..., 'args': [...], 'kwargs': {...}}."""
    if isinstance(value, ast.Ref):
        return value.name
    if isinstance(value, ast.Call):
        return {
            "name": value.name,
            "args": [plain(a.value) for a in value.positional()],
            "kwargs": {k: plain(a.value) for k, a in value.keywords().items()},
        }
    if isinstance(value, ast.Range):
        return value.values()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value  # numbers (an `ast.Float` is a float that prints as written), strings, booleans


def literal(arg: ast.Arg, errors: list[PartError]) -> Any:
    """An argument outside any template: a bare name there names nothing."""
    unknown = next(refs_inside(arg.value), None)
    if unknown is not None:
        errors.append(SpecError(f"unknown name '{unknown.name}'", unknown.loc,
                                with_boolean_guess(unknown.name, "write a number, a list or a string")))
        return None
    return plain(arg.value)


def evaluate(value: Any, env: dict[str, Any], where: str, errors: list[PartError]) -> Any:
    """An argument inside a template: parameter names -> their values."""
    if isinstance(value, ast.Ref):
        if value.name in env:
            return env[value.name]
        hint = valid_names(value.name, env, "parameters here") if env else "parameters here: none"
        errors.append(SpecError(f"unknown name '{value.name}' in {where}", value.loc,
                                hint if "did you mean" in hint else with_boolean_guess(value.name, hint)))
        return None
    if isinstance(value, list):
        return [evaluate(v, env, where, errors) for v in value]
    return plain(value)


def with_boolean_guess(name: str, hint: str) -> str:
    """`hint`, led by "did you mean 'true'?" when `name` is a misspelt true or false."""
    close = closest(name, ["true", "false"], cutoff=0.75)  # 'ture', 'flase'; not 'fast' for 'false'
    return f"did you mean '{close}'? {hint}" if close else hint


def symbolic(value: Any, params: list[str]) -> Any:
    """An argument as a template writes it: its parameters kept as `ParamRef`s."""
    if isinstance(value, ast.Ref) and value.name in params:
        return ParamRef(value.name)
    if isinstance(value, list):
        return [symbolic(v, params) for v in value]
    return plain(value)


def refs_inside(value: Any):
    """Bare names used as values (at the top, inside lists and inside call arguments)."""
    if isinstance(value, ast.Ref):
        yield value
    elif isinstance(value, ast.Call):
        for arg in value.args:
            yield from refs_inside(arg.value)
    elif isinstance(value, list):
        for v in value:
            yield from refs_inside(v)
