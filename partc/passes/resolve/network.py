"""Resolve pass, the network's own statements: seed, inputs and levels (with their segments bound)."""

from __future__ import annotations

from partc.errors import Location, PartError, SpecError
from partc.ir import InputSpec, Level, SegmentGroup
from partc.language import ast
from partc.passes.resolve.templates import Templates, bind_layers

DTYPES = ("float",)
MAX_SEGMENTS = 10_000  # per level

# Level and task names become keys of torch's nn.ModuleDict, which refuses its own attribute
# names. Kept here, torch-free, so `partc check` catches them; tests/test_smoke.py checks the
# set against the installed torch.
TORCH_RESERVED = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children clear compile cpu cuda
double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
get_submodule half ipu items keys load_state_dict modules mtia named_buffers named_children
named_modules named_parameters parameters pop register_backward_hook register_buffer
register_forward_hook register_forward_pre_hook register_full_backward_hook
register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook
register_module register_parameter register_state_dict_post_hook register_state_dict_pre_hook
requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train training
type update values xpu zero_grad
""".split())


def reserved_name_error(kind: str, name: str, loc: Location) -> SpecError | None:
    if name in TORCH_RESERVED or name.startswith("_"):
        return SpecError(f"{kind} name '{name}' is reserved: PyTorch modules use it themselves", loc,
                         f"rename the {kind} (names torch reserves include forward, eval, to, keys, type; "
                         "names may not start with '_')")
    return None


def resolve_seed(tree: ast.Network, errors: list[PartError]) -> int:
    if len(tree.seeds) > 1:
        errors.append(SpecError("the network declares 'seed' twice", tree.seeds[1][1], "keep one seed"))
    return tree.seeds[0][0] if tree.seeds else 0


def resolve_inputs(tree: ast.Network, errors: list[PartError]) -> dict[str, InputSpec]:
    inputs: dict[str, InputSpec] = {}
    for decl in tree.inputs:
        if decl.name in inputs:
            errors.append(SpecError(f"input '{decl.name}' is declared twice", decl.loc,
                                    f"give each input its own name; the first '{decl.name}' is on line "
                                    f"{inputs[decl.name].loc.line}"))
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
    for lvl in tree.levels:
        if lvl.name in seen:
            errors.append(SpecError(f"level '{lvl.name}' is declared twice", lvl.loc,
                                    f"give each level its own name; the first '{lvl.name}' is on line "
                                    f"{seen[lvl.name].loc.line}"))
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
