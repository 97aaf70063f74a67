"""Layer primitives -> PyTorch constructor source, for the generated `model.py`, read off the layer table.

The source counterpart of `partc.compiler.modules.build_layer`: a layer's
`torch` entry in `partc.layers` says its class and arguments, and this
module writes them as the `torch.nn` call that builds the same module. A
layer inside a segment template is written with the template's parameters
as names (`nn.Conv2d(in_channels, c, kernel_size=3, padding=1)`), so one
generated class serves every level that uses the template; sizes that
depend on where the segment sits (a linear layer after `flatten`, a
layernorm's shape) become extra constructor arguments.

A per-task layer (`task_batchnorm`) is written as
`nn.ModuleDict({task: nn.BatchNorm2d(c) for task in tasks})`: one copy for
each task routed through the segment, which the segment's class takes as
`tasks` and whose `forward(x, task)` runs (`TASK_SEGMENT`, the base class
of such segments, written once into model.py).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from partc.ir import Layer, ParamRef, SegmentGroup, Template
from partc.layers import IN_CHANNELS, IN_SHAPE, PRIMITIVES, REQUIRED, Const

# Names a generated constructor must not take: they would shadow what its body uses.
RESERVED = {"self", "nn", "torch", "super", "in_channels", "Tensor", "tasks", "task"}

# The base class of generated segments holding per-task layers, and the name of the argument listing their tasks.
TASK_SEGMENT = "TaskSegment"
TASKS_ARG = "tasks"


@dataclass(frozen=True)
class Sym:
    """A name in generated code: a template parameter, or a size set by where the segment sits."""

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
    camel = "".join(p[:1].upper() + p[1:] for p in parts) or "Segment"
    return camel + "_" if keyword.iskeyword(camel) else camel  # `None`, `True`, `False`


def layer_code(layer: Layer, args: dict[str, Any], width: Any, shape: Any, tasks: str = TASKS_ARG) -> str:
    """The `nn` call that builds `layer`. `args` may hold `Sym`s; `width` and `shape` stand for the
    input's channel count and whole shape (numbers, or `Sym`s inside a template); `tasks` is the
    expression naming the tasks that each own a copy of a per-task layer."""
    prim = PRIMITIVES[layer.op]
    module = prim.torch(len(layer.in_shape), layer.args)
    parts = []
    for index, (torch_name, source) in enumerate(module.args):
        if source == IN_CHANNELS:
            value = width
        elif source == IN_SHAPE:
            value = shape
        elif isinstance(source, Const):
            value = source.value
        else:
            value = args[source]
            default = prim.default(source)
            if value is None or (index >= module.positional and torch_name not in module.always
                                 and not isinstance(value, Sym) and default is not REQUIRED and value == default):
                continue
        parts.append(code(value) if index < module.positional else f"{torch_name}={code(value)}")
    call = f"nn.{module.cls}({', '.join(parts)})"
    return f"nn.ModuleDict({{task: {call} for task in {tasks}}})" if layer.per_task else call


def tasks_code(tasks: list[str]) -> str:
    """A tuple of task names as Python source: `("a", "b")`, `("a",)`, `()`."""
    names = ", ".join('"' + t + '"' for t in tasks)  # task names are identifiers: nothing to escape
    return f"({names},)" if len(tasks) == 1 else f"({names})"


def concrete_layers(layers: list[Layer], tasks: list[str] | None = None) -> list[str]:
    """Constructor calls of layers bound to numbers (stems, heads, `then`, primitive levels; `tasks`: a
    primitive level's segment's users, for its per-task layers)."""
    return [layer_code(layer, layer.args, layer.in_shape[0], list(layer.in_shape), tasks_code(tasks or []))
            for layer in layers]


@dataclass
class SegmentClass:
    """A generated `nn.Sequential` subclass for one segment template."""

    name: str  # the Python class name
    template: Template
    params: list[str]  # Python names of the template's parameters, in order
    param_types: list[str]  # their types at the first use (int, float, bool)
    per_task: list[int] = field(default_factory=list)  # positions of per-task layers
    uses_in_channels: bool = False
    sizes: list[tuple[str, int]] = field(default_factory=list)  # (constructor arg, layer index)
    layers: list[tuple[str, str]] = field(default_factory=list)  # (constructor call, layer as written)

    def describe(self) -> str:
        params = self.template.params
        return f"{self.template.name}({', '.join(params)})" if params else self.template.name

    @property
    def base(self) -> str:
        return TASK_SEGMENT if self.per_task else "nn.Sequential"

    def size_notes(self) -> list[str]:
        """What each extra size argument (and `tasks`) is, for the class docstring."""
        notes = []
        if self.per_task:
            numbers = [str(i) for i in self.per_task]
            where = f"layer {numbers[0]}" if len(numbers) == 1 else f"layers {', '.join(numbers[:-1])} and {numbers[-1]}"
            ops = ", ".join(dict.fromkeys(self.template.layers[i].op for i in self.per_task))
            notes.append(f"{TASKS_ARG}: the tasks routed through the segment; each owns its own copy of {where} ({ops}).")
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
        args += [f"{TASKS_ARG}: tuple[str, ...]"] if self.per_task else []
        return ", ".join(["self"] + args)

    def call(self, group: SegmentGroup, in_shape: tuple[int, ...], tasks: list[str] | None = None) -> str:
        """The constructor call building one segment of `group` (a level's or stem's use of the template);
        `tasks`: the segment's users, when the template has per-task layers."""
        args = [f"in_channels={in_shape[0]}"] if self.uses_in_channels else []
        args += [f"{p}={group.template_args[t]!r}" for p, t in zip(self.params, self.template.params)]
        for name, index in self.sizes:
            shape = group.layers[index].in_shape
            args.append(f"{name}={list(shape) if name.startswith('shape_') else shape[0]!r}")
        if self.per_task:
            args.append(f"{TASKS_ARG}={tasks_code(tasks or [])}")
        return f"{self.name}({', '.join(args)})"


def segment_class(template: Template, group: SegmentGroup, name: str) -> SegmentClass:
    """Write `template` as a class; `group` (one use of it) supplies tensor ranks."""
    params = {p: py_name(p) for p in template.params}
    types = [_type_name(group.template_args[p]) for p in template.params]
    cls = SegmentClass(name, template, list(params.values()), types)
    width: Any = Sym("in_channels")  # the current input's channel count, as generated code names it
    for index, (written, layer) in enumerate(zip(template.layers, group.layers)):
        prim = PRIMITIVES[layer.op]
        args = dict(layer.args) | {k: Sym(params[v.name]) for k, v in written.args.items() if isinstance(v, ParamRef)}
        sources = {source for _, source in prim.torch(len(layer.in_shape), layer.args).args}
        shape: Any = None
        if IN_SHAPE in sources and (len(layer.in_shape) > 1 or width is None):
            shape = Sym(f"shape_{index}")  # an image's layernorm covers its height and width
            cls.sizes.append((shape.name, index))
        elif IN_SHAPE in sources:
            shape = width
        if IN_CHANNELS in sources:
            if width is None:  # after flatten the width depends on the input's height and width
                width = Sym(f"size_{index}")
                cls.sizes.append((width.name, index))
            cls.uses_in_channels |= width == Sym("in_channels")
        if layer.per_task:
            cls.per_task.append(index)
        comment = written.written if written.args or layer.per_task else ""
        cls.layers.append((layer_code(layer, args, width, shape), comment))
        if prim.channels is None:
            width = None
        elif prim.channels != "same":
            width = args[prim.channels]
    return cls


def _type_name(value: Any) -> str:
    """The annotation of a template argument: bool, int, float (a spec float is an `ast.Float`), or its type."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind.__name__
    return type(value).__name__


def class_key(group: SegmentGroup) -> tuple:
    """Uses of a template that need the same class: same template, same tensor ranks."""
    return (group.template, tuple(len(layer.in_shape) for layer in group.layers))
