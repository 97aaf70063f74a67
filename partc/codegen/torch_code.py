"""Layer primitives -> PyTorch constructor source, for the generated `model.py`.

The source counterpart of `partc.compiler.modules.build_layer`: each
primitive becomes the `torch.nn` call that builds the same module. A layer
inside a segment template is written with the template's parameters as
names (`nn.Conv2d(in_channels, c, kernel_size=3, padding=1)`), so one
generated class serves every level that uses the template; sizes that
depend on where the segment sits (a linear layer after `flatten`, a
layernorm's shape) become extra constructor arguments.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from partc.ir import Layer, SegmentGroup
from partc.language import ast
from partc.layers import PRIMITIVES, REQUIRED

# Names a generated constructor must not take: they would shadow what its body uses.
RESERVED = {"self", "nn", "torch", "super", "in_channels", "Tensor"}


@dataclass(frozen=True)
class Sym:
    """A template parameter used as a layer argument."""

    name: str


def code(value: Any) -> str:
    return value.name if isinstance(value, Sym) else repr(value)


def py_name(name: str, taken: set[str] = RESERVED) -> str:
    """`name` as a Python identifier that shadows nothing the generated code uses."""
    while keyword.iskeyword(name) or name in taken or re.match(r"(size|shape)_\d+$", name):
        name += "_"
    return name


def class_name(name: str) -> str:
    """snake_case or any NAME -> CamelCase (`res_block` -> `ResBlock`)."""
    parts = [p for p in re.split(r"_+", name) if p]
    camel = "".join(p[:1].upper() + p[1:] for p in parts)
    return camel or "Segment"


def layer_code(layer: Layer, args: dict[str, Any], width: str) -> str:
    """The `nn` call that builds `layer`; `args` may hold `Sym`s, `width` is its input channel expression."""
    op = layer.op
    given = {k: v for k, v in args.items() if isinstance(v, Sym) or v != _default(op, k)}

    def opt(name: str, torch_name: str | None = None) -> str:
        return f", {torch_name or name}={code(args[name])}" if name in given else ""

    if op == "conv":
        return (f"nn.Conv2d({width}, {code(args['out'])}, kernel_size={code(args['k'])}"
                f"{opt('stride')}{opt('pad', 'padding')}{opt('groups')}{opt('bias')})")
    if op == "linear":
        return f"nn.Linear({width}, {code(args['out'])}{opt('bias')})"
    if op == "batchnorm":
        return f"nn.BatchNorm{'2' if len(layer.in_shape) == 3 else '1'}d({width})"
    if op == "layernorm":
        return f"nn.LayerNorm({width})"  # `width` is the normalised shape here
    if op in ("maxpool", "avgpool"):
        if op == "avgpool" and args["k"] is None:
            return "nn.AdaptiveAvgPool2d(1)"
        kind = "MaxPool2d" if op == "maxpool" else "AvgPool2d"
        stride = f", stride={code(args['stride'])}" if args["stride"] is not None else ""
        return f"nn.{kind}({code(args['k'])}{stride})"
    if op == "dropout":
        return f"nn.Dropout({code(args['p'])})"
    simple = {"relu": "nn.ReLU()", "gelu": "nn.GELU()", "flatten": "nn.Flatten()"}
    if op in simple:
        return simple[op]
    raise NotImplementedError(f"partc has no generated code for layer '{op}'")  # a bug: the checker knows every op


def _default(op: str, arg: str) -> Any:
    default = next(p.default for p in PRIMITIVES[op].params if p.name == arg)
    return object() if default is REQUIRED else default


def concrete_layers(layers: list[Layer]) -> list[str]:
    """Constructor calls of layers bound to numbers (stems, heads, `then`, primitive levels)."""
    out = []
    for layer in layers:
        width = repr(list(layer.in_shape)) if layer.op == "layernorm" else repr(layer.in_shape[0])
        out.append(layer_code(layer, layer.args, width))
    return out


@dataclass
class SegmentClass:
    """A generated `nn.Sequential` subclass for one segment template."""

    name: str  # the Python class name
    template: ast.SegmentDef
    params: list[str]  # Python names of the template's parameters, in order
    param_types: list[str]  # their types at the first use (int, float, bool)
    uses_in_channels: bool = False
    sizes: list[tuple[str, int]] = field(default_factory=list)  # (constructor arg, layer index)
    layers: list[tuple[str, str]] = field(default_factory=list)  # (constructor call, layer as written)

    def describe(self) -> str:
        params = self.template.params
        return f"{self.template.name}({', '.join(params)})" if params else self.template.name

    def size_notes(self) -> list[str]:
        """What each extra size argument is, for the class docstring."""
        notes = []
        for name, index in self.sizes:
            what = "shape" if name.startswith("shape_") else "width"
            notes.append(f"{name}: the input {what} of layer {index} ({self.layers[index][0].split('(')[0]}), "
                         "set by where the segment sits.")
        return notes

    def body(self, max_line: int) -> list[str]:
        """The constructor calls, each with the layer as written in a comment (above it when too long)."""
        lines = []
        for call, written in self.layers:
            if not written:
                lines.append(f"{call},")
            elif len(call) + len(written) + 16 > max_line:
                lines += [f"# {written}", f"{call},"]
            else:
                lines.append(f"{call},  # {written}")
        return lines

    def signature(self) -> str:
        args = (["in_channels: int"] if self.uses_in_channels else [])
        args += [f"{p}: {kind}" for p, kind in zip(self.params, self.param_types)]
        args += [f"{name}: {'list[int]' if name.startswith('shape_') else 'int'}" for name, _ in self.sizes]
        return ", ".join(["self"] + args)

    def call(self, group: SegmentGroup, in_shape: tuple[int, ...]) -> str:
        """The constructor call building one segment of `group` (a level's or stem's use of the template)."""
        args = [f"in_channels={in_shape[0]}"] if self.uses_in_channels else []
        args += [f"{p}={group.template_args[t]!r}" for p, t in zip(self.params, self.template.params)]
        for name, index in self.sizes:
            shape = group.layers[index].in_shape
            args.append(f"{name}={list(shape) if name.startswith('shape_') else shape[0]!r}")
        return f"{self.name}({', '.join(args)})"


def segment_class(template: ast.SegmentDef, group: SegmentGroup, name: str) -> SegmentClass:
    """Write `template` as a class; `group` (one use of it) supplies tensor ranks."""
    params = {p: py_name(p) for p in template.params}
    types = [type(group.template_args[p]).__name__ for p in template.params]
    cls = SegmentClass(name, template, list(params.values()), types)
    width: str | None = "in_channels"
    for index, (call, layer) in enumerate(zip(template.layers, group.layers)):
        args = _symbolic_args(call, layer, params)
        if layer.op == "layernorm" and (len(layer.in_shape) > 1 or width is None):
            cls.sizes.append((f"shape_{index}", index))  # an image's layernorm covers its height and width
            cls.layers.append((layer_code(layer, args, f"shape_{index}"), _written(call)))
            continue
        if layer.op in ("conv", "linear", "batchnorm", "layernorm"):
            if width is None:  # after flatten the width depends on the input's height and width
                width = f"size_{index}"
                cls.sizes.append((width, index))
            cls.uses_in_channels |= width == "in_channels"
        cls.layers.append((layer_code(layer, args, width or ""), _written(call)))
        if layer.op in ("conv", "linear"):
            width = code(args["out"])
        elif layer.op == "flatten":
            width = None
    return cls


def class_key(group: SegmentGroup) -> tuple:
    """Uses of a template that need the same class: same template, same tensor ranks."""
    return (group.template, tuple(len(layer.in_shape) for layer in group.layers))


def _symbolic_args(call: ast.Call, layer: Layer, params: dict[str, str]) -> dict[str, Any]:
    """The layer's bound arguments, with template parameters kept as names."""
    names = [p.name for p in PRIMITIVES[layer.op].params]
    written = dict(zip(names, (a.value for a in call.positional())))
    written |= {k: a.value for k, a in call.keywords().items()}
    args = dict(layer.args)
    for key, value in written.items():
        if isinstance(value, ast.Ref) and value.name in params:
            args[key] = Sym(params[value.name])
    return args


def _written(call: ast.Call) -> str:
    """A layer call with arguments as the spec writes it, for a comment ("" for a bare `relu`)."""
    def show(v: Any) -> str:
        if isinstance(v, ast.Ref):
            return v.name
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, ast.Range):
            return f"{v.lo}..{v.hi}"
        if isinstance(v, list):
            return "[" + ", ".join(show(x) for x in v) + "]"
        return repr(v) if isinstance(v, str) else str(v)

    parts = [show(a.value) if a.name is None else f"{a.name}={show(a.value)}" for a in call.args]
    return f"{call.name}({', '.join(parts)})" if call.args else ""
