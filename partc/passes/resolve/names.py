"""Resolve pass, names: the rules every declared name follows (unique; at most MAX_NAME_LENGTH characters for
the network, levels and tasks; for levels and tasks, not a name torch
reserves and not a Python keyword: they key torch's ModuleDicts and appear as attribute names in the code
torch.fx generates, `self.levels.l1`; codegen makes every other name a Python identifier itself,
`partc.codegen.torch_code.py_name`)."""

from __future__ import annotations

import keyword

from partc.errors import Location, SpecError

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


# Network, level and task names become file and folder names (runs/NETWORK, TASK.onnx,
# labels_TASK.txt, NETWORK/1/model.onnx); file systems allow 255 bytes a name.
MAX_NAME_LENGTH = 100


def long_name_error(kind: str, name: str, loc: Location) -> SpecError | None:
    if len(name) <= MAX_NAME_LENGTH:
        return None
    return SpecError(f"{kind} name '{name[:20]}...' is {len(name):,} characters long", loc,
                     f"use at most {MAX_NAME_LENGTH} characters: partc writes {kind} names into file names "
                     "(runs/NETWORK, TASK.onnx), which file systems limit to 255 bytes")


def reserved_name_error(kind: str, name: str, loc: Location) -> SpecError | None:
    if len(name) > MAX_NAME_LENGTH:
        return long_name_error(kind, name, loc)
    if name in TORCH_RESERVED or name.startswith("_"):
        return SpecError(f"{kind} name '{name}' is reserved: PyTorch modules use it themselves", loc,
                         f"rename the {kind} (names torch reserves include forward, eval, to, keys, type; "
                         "names may not start with '_')")
    if keyword.iskeyword(name):
        return SpecError(f"{kind} name '{name}' is a Python keyword", loc,
                         f"rename the {kind}: torch.fx writes level and task names into Python code, where "
                         "keywords (class, def, lambda, None, ...) cannot stand")
    return None


def declared_twice(kind: str, name: str, loc: Location, first: Location) -> SpecError:
    return SpecError(f"{kind} '{name}' is declared twice", loc,
                     f"give each {kind.split()[-1]} its own name; the first '{name}' is on line {first.line}")
