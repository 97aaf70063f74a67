"""Resolve pass, the network's own statements: seed, inputs and levels (with their segments bound)."""

from __future__ import annotations

from partc.errors import PartError, SpecError
from partc.ir import InputSpec, Level, SegmentGroup
from partc.language import ast
from partc.passes.resolve.names import declared_twice, reserved_name_error
from partc.passes.resolve.templates import Templates, bind_layers

DTYPES = ("float",)
MAX_SEGMENTS = 10_000  # per level
MAX_TOTAL_SEGMENTS = 100_000  # in the whole network: graph nodes and compiled modules, one each

def resolve_seed(tree: ast.Network, errors: list[PartError]) -> int:
    if len(tree.seeds) > 1:
        errors.append(SpecError("the network declares 'seed' twice", tree.seeds[1][1], "keep one seed"))
    return tree.seeds[0][0] if tree.seeds else 0


def resolve_inputs(tree: ast.Network, errors: list[PartError]) -> dict[str, InputSpec]:
    inputs: dict[str, InputSpec] = {}
    for decl in tree.inputs:
        if decl.name in inputs:
            errors.append(declared_twice("input", decl.name, decl.loc, inputs[decl.name].loc))
            continue
        if decl.dtype not in DTYPES:
            errors.append(SpecError(f"unknown input type '{decl.dtype}'", decl.loc, f"valid types: {', '.join(DTYPES)}"))
        if any(d <= 0 for d in decl.shape):
            errors.append(SpecError(f"input '{decl.name}' has a zero dimension {list(decl.shape)}", decl.loc,
                                    "every dimension must be >= 1"))
        inputs[decl.name] = InputSpec(decl.name, decl.dtype, decl.shape, decl.loc)
    if not inputs:
        errors.append(SpecError("the network declares no input", tree.loc, "add e.g. 'input image: float[3, 32, 32]'"))
    return inputs


def resolve_levels(tree: ast.Network, templates: Templates, errors: list[PartError]) -> list[Level]:
    levels: list[Level] = []
    seen: dict[str, ast.LevelDef] = {}
    segments = 0
    for lvl in tree.levels:
        if lvl.name in seen:
            errors.append(declared_twice("level", lvl.name, lvl.loc, seen[lvl.name].loc))
            continue
        seen[lvl.name] = lvl
        reserved = reserved_name_error("level", lvl.name, lvl.loc)
        if reserved:
            errors.append(reserved)
        total = sum(g.count for g in lvl.groups)
        if total > MAX_SEGMENTS:  # before binding: a level of 10^6 segments must not be built
            errors.append(SpecError(f"level '{lvl.name}' has {total:,} segments", lvl.loc,
                                    f"a level holds at most {MAX_SEGMENTS:,} segments"))
            continue
        segments += total
        if segments > MAX_TOTAL_SEGMENTS:
            errors.append(SpecError(f"the levels up to '{lvl.name}' have {segments:,} segments in all", lvl.loc,
                                    f"a network holds at most {MAX_TOTAL_SEGMENTS:,} segments"))
            break
        groups = []
        for group in lvl.groups:
            if group.count < 1:
                errors.append(SpecError(f"level '{lvl.name}' needs at least one segment per group, got {group.count}",
                                        group.loc, "write M x template(...) with M >= 1"))
                continue
            body = templates.instantiate(group.template, f"level '{lvl.name}'")
            if body is not None:
                groups.append(SegmentGroup(group.count, group.template.name, body[1], body[0], group.loc))
        then = bind_layers(lvl.then, {}, f"level '{lvl.name}'", errors)
        if len(groups) == len(lvl.groups):
            levels.append(Level(lvl.name, len(levels), groups, lvl.residual, then, lvl.loc))
    if not tree.levels:
        errors.append(SpecError("the network declares no level", tree.loc, "add e.g. 'level l1 = 4 x conv(16, pad=1)'"))
    return levels
