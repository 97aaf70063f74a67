"""Resolve pass, the train block: every setting checked against `partc.train.settings`, kept as plain data."""

from __future__ import annotations

from typing import Any

from partc.errors import Location, PartError, SpecError, closest, valid_names
from partc.language import ast
from partc.language.printer import value_text
from partc.passes.resolve.values import plain, refs_inside, with_boolean_guess
from partc.train.settings import SETTINGS, check_setting


def resolve_train(tree: ast.Network, errors: list[PartError]) -> dict[str, Any]:
    train: dict[str, Any] = {}
    for s in tree.train:
        setting = SETTINGS.get(s.name)
        if setting is None:
            errors.append(SpecError(f"unknown train setting '{s.name}'", s.loc, valid_names(s.name, SETTINGS, "settings")))
            continue
        if s.name in train:
            errors.append(SpecError(f"train setting '{s.name}' is given twice", s.loc, f"keep one '{s.name}'"))
            continue
        nested = [r for r in refs_inside(s.value) if r is not s.value]  # a bare word at the top is an enum value
        if nested:
            errors.append(SpecError(f"unknown name '{nested[0].name}' in train setting '{s.name}'", nested[0].loc,
                                    with_boolean_guess(nested[0].name,
                                                       f"write a number or a list there, e.g. {setting.example}")))
            continue
        value = plain(s.value)
        # the whole value as written (`mode fusd`, a bare word, not the string "fusd"); parts as plain values
        problem = check_setting(s.name, value, lambda v, s=s, value=value: value_text(s.value if v is value else v))
        if problem is not None:
            hint = problem.hint
            close = closest(problem.choice, problem.choices) if problem.choice else None
            if close:
                hint = f"did you mean '{close}'? {hint}".strip()
            errors.append(SpecError(problem.message, _argument_loc(s, problem.argument), hint))
            continue
        train[s.name] = value
    return train


def _argument_loc(s: ast.Setting, argument: str | int | None) -> Location:
    """Where the argument at fault is written, falling back to the setting."""
    if isinstance(s.value, ast.Call) and argument is not None:
        if isinstance(argument, str) and argument in s.value.keywords():
            return s.value.keywords()[argument].loc
        positional = s.value.positional()
        if isinstance(argument, int) and argument < len(positional):
            return positional[argument].loc
    return s.loc
