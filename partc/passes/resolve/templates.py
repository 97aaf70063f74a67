"""Resolve pass, segments: layer calls bound to primitives, templates instantiated with their arguments.

A template is checked once where it is defined (`define`, into
`net.templates` with its parameters kept symbolic, for codegen) and bound
at every use (`Templates.instantiate`), so each level holds the concrete
layers of its segments.
"""

from __future__ import annotations

from typing import Any

from partc.errors import PartError, SpecError, closest, valid_names
from partc.ir import Layer, Template, TemplateLayer
from partc.language import ast
from partc.language.printer import call_text, value_text
from partc.layers import PRIMITIVES, REQUIRED, ArgumentError, Primitive, bind_args
from partc.passes.resolve.names import declared_twice
from partc.passes.resolve.values import evaluate, literal, symbolic


def signature(prim: Primitive) -> str:
    """`conv(out, k=3, stride=1, ...)`: how a layer is called, for hints."""
    parts = [p.name if p.default is REQUIRED else f"{p.name}={value_text(p.default)}" for p in prim.params]
    return f"{prim.name}({', '.join(parts)})" if parts else prim.name


def bind_layer(call: ast.Call, env: dict[str, Any], where: str, errors: list[PartError]) -> Layer | None:
    """One layer call (inside a template when `env` holds its parameters) -> a bound `Layer`."""
    prim = PRIMITIVES.get(call.name)
    if prim is None:
        errors.append(SpecError(f"unknown layer '{call.name}' in {where}", call.loc,
                                valid_names(call.name, sorted(PRIMITIVES), "layers")))
        return None
    for key, arg in call.keywords().items():
        if key not in prim.param_names:
            close = closest(key, prim.param_names)
            errors.append(SpecError(f"{prim.name} has no argument '{key}'", arg.loc,
                                    (f"did you mean '{close}'? " if close else "") + f"usage: {signature(prim)}"))
            return None
    before = len(errors)
    positional = [evaluate(a.value, env, where, errors) for a in call.positional()]
    keywords = {k: evaluate(a.value, env, where, errors) for k, a in call.keywords().items()}
    if len(errors) > before:
        return None
    try:
        args = bind_args(prim, positional, keywords)
    except ArgumentError as e:
        message = e.message
        if e.param is not None and e.param in prim.param_names:
            index = prim.param_names.index(e.param)
            given = keywords[e.param] if e.param in keywords else positional[index] if index < len(positional) else None
            written = _written_argument(call, prim, e.param)
            shown = value_text(given) if written is None or written == value_text(given) else \
                f"{value_text(given)} ({written})"
            message += f", got {shown}"
        errors.append(SpecError(message, call.loc, f"usage: {signature(prim)}"))
        return None
    return Layer(call.name, args, call.loc)


def _written_argument(call: ast.Call, prim: Primitive, param: str) -> str | None:
    """How the call wrote argument `param` (a template parameter's name, say), if it did."""
    if param in call.keywords():
        return value_text(call.keywords()[param].value)
    index = prim.param_names.index(param)
    positional = call.positional()
    return value_text(positional[index].value) if index < len(positional) else None


def bind_layers(calls: list[ast.Call], env: dict[str, Any], where: str, errors: list[PartError]) -> list[Layer]:
    return [layer for call in calls if (layer := bind_layer(call, env, where, errors)) is not None]


def define(seg: ast.SegmentDef) -> Template:
    """A template with its layers' arguments as written, parameters symbolic."""
    layers = []
    for call in seg.layers:
        prim = PRIMITIVES.get(call.name)
        names = prim.param_names if prim else ()
        args = {name: symbolic(a.value, seg.params) for name, a in zip(names, call.positional(), strict=False)}
        args |= {k: symbolic(a.value, seg.params) for k, a in call.keywords().items()}
        layers.append(TemplateLayer(call.name, args, call_text(call), call.loc))
    return Template(seg.name, list(seg.params), layers, seg.loc)


class Templates:
    """The spec's segment templates, checked once, instantiated at each use."""

    def __init__(self, tree: ast.Network, errors: list[PartError]):
        self.errors = errors
        self.defs: dict[str, ast.SegmentDef] = {}
        for seg in tree.segments:
            if seg.name in PRIMITIVES:
                self._err(f"segment template '{seg.name}' has the name of a layer", seg.loc,
                          f"rename the template; layers: {', '.join(sorted(PRIMITIVES))}")
                continue
            if seg.name in self.defs:
                self.errors.append(declared_twice("segment template", seg.name, seg.loc, self.defs[seg.name].loc))
                continue
            if len(set(seg.params)) != len(seg.params):
                self._err(f"segment template '{seg.name}' names a parameter twice", seg.loc,
                          "give each parameter its own name")
            if not seg.layers:
                self._err(f"segment template '{seg.name}' has no layers", seg.loc, "add layers, e.g. { conv(64); relu }")
            self.defs[seg.name] = seg

    def _err(self, message: str, loc, hint: str) -> None:
        self.errors.append(SpecError(message, loc, hint))

    def ir_templates(self) -> dict[str, Template]:
        return {name: define(seg) for name, seg in self.defs.items()}

    def instantiate(self, call: ast.Call, where: str) -> tuple[list[Layer], dict[str, Any]] | None:
        """A template or primitive use -> (its concrete layers, the template's arguments by parameter)."""
        if call.name in PRIMITIVES:
            layer = bind_layer(call, {}, where, self.errors)
            return ([layer], {}) if layer else None
        seg = self.defs.get(call.name)
        if seg is None:
            known = sorted(self.defs) + sorted(PRIMITIVES)
            self._err(f"unknown segment template '{call.name}'", call.loc,
                      valid_names(call.name, known, "templates and layers"))
            return None
        usage = f"usage: {seg.name}({', '.join(seg.params)})"
        pos, kw = call.positional(), call.keywords()
        if len(pos) > len(seg.params):
            self._err(f"segment template '{seg.name}' takes {len(seg.params)} argument(s), got {len(pos)}", call.loc, usage)
            return None
        env = {name: literal(a, self.errors) for name, a in zip(seg.params, pos, strict=False)}
        for key, arg in kw.items():
            if key not in seg.params:
                self._err(f"segment template '{seg.name}' has no parameter '{key}'", arg.loc,
                          valid_names(key, seg.params, f"{seg.name}'s parameters"))
                return None
            if key in env:
                self._err(f"segment template '{seg.name}' gets argument '{key}' twice", arg.loc, usage)
                return None
            env[key] = literal(arg, self.errors)
        missing = [p for p in seg.params if p not in env]
        if missing:
            self._err(f"segment template '{seg.name}' needs argument '{missing[0]}'", call.loc, usage)
            return None
        env = {p: env[p] for p in seg.params}  # parameter order, however the call wrote them
        return bind_layers(seg.layers, env, f"segment template '{seg.name}'", self.errors), env
