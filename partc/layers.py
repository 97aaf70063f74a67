"""The layer primitives a segment is built from: one table entry each, every fact about a layer in it.

An entry says, as plain torch-free data (so `partc check` stays fast):
- `params`: the arguments a spec may give, their types, defaults and valid values;
- `ranks`: the input ranks it accepts (an image is (C, H, W), rank 3; a
  feature vector (F,), rank 1), checked for every layer by shape inference;
- `shape` and `count`: its output shape and parameter count, as arithmetic;
- `per_task`: inside a segment, each task routed through the segment owns
  a copy of its own (`task_batchnorm`), so `count` holds once per such task
  (`partc.ir.Network` applies that rule for every count);
- `torch`: the `torch.nn` module it compiles to (class and constructor
  arguments), which the compiler builds and codegen writes as source;
- `onnx`: how the exporter writes it as ONNX nodes, a small function of an
  emitter `g` (below) and the bound arguments;
- `affine` / `absorbs`: what BatchNorm folding needs (below);
- `macs`: multiply-adds per sample, for FLOPs figures.

Adding a layer means adding one entry here; the compiler
(`partc.compiler.modules`), codegen (`partc.codegen.torch_code`), FLOP
counting (`partc.train.flops`) and the ONNX exporter (`partc.export.emit`)
read the table and have no per-layer code of their own.

ONNX rules. `onnx(g, args)` returns the name of the layer's output tensor.
`g` is the exporter's view of one layer of one module (no onnx or torch is
imported here): `g.x` the input tensor, `g.in_shape`/`g.out_shape` (no
batch axis), `g.weight(t)` the initializer holding the module's tensor `t`
(named `<module path>.<t>`, the compiled module's own state-dict name),
`g.optional(t)` that name in a list, or `[]` when the module has no `t`,
`g.op(op_type, *inputs, **attributes)` one node, `g.scalar(v)` a float
constant. Eval mode only (dropout is the identity).

Folding. A layer with `affine` is, in eval mode, a per-channel `x * scale +
shift`; `affine(t)` computes (scale, shift) from the module's tensors
(`t(name)`, float64 arrays). When it directly follows a layer with
`absorbs = (weight, bias)` (tensors whose axis 0 is the output channel),
the exporter folds it into them (`weight * scale`, `bias * scale +
shift`) and writes no node for it.

Shapes exclude the batch axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import prod
from typing import Any

from partc.errors import ArgumentError, ShapeError

__all__ = ["PRIMITIVES", "ArgumentError", "ShapeError", "bind_args", "output_shape", "torch_arguments"]

REQUIRED = object()

# Where a torch constructor argument comes from, besides a spec argument.
IN_CHANNELS = "input:channels"  # the input's first dimension (channels, or features of a flat input)
IN_SHAPE = "input:shape"  # the whole input shape, as a list


@dataclass(frozen=True)
class Param:
    name: str
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    check: Callable[[Any], bool] | None = None
    expect: str = ""


@dataclass(frozen=True)
class Const:
    """A constructor argument with a fixed value (`AdaptiveAvgPool2d(1)`)."""

    value: Any


@dataclass(frozen=True)
class TorchModule:
    """A `torch.nn` class and its constructor arguments, in the order codegen writes them.

    Each argument is `(torch keyword, source)`, the source being a spec
    parameter name, `IN_CHANNELS`, `IN_SHAPE` or a `Const`. The first
    `positional` arguments are written positionally in generated code; an
    argument whose spec parameter is `None` is left out (torch's default).
    """

    cls: str
    args: tuple[tuple[str, Any], ...] = ()
    positional: int = 0
    always: tuple[str, ...] = ()  # keywords written even at the spec's default (torch has none for them)


@dataclass(frozen=True)
class Primitive:
    name: str
    params: tuple[Param, ...]
    ranks: tuple[int, ...]
    shape: Callable[[tuple[int, ...], dict], tuple[int, ...]]
    torch: Callable[[int, dict], TorchModule]  # (input rank, bound args) -> the module
    channels: str | None = "same"  # the output's first dimension: the input's ("same"), an argument's, or None
    per_task: bool = False  # each task routed through the segment owns its own copy (see `module_path`)
    count: Callable[[tuple[int, ...], dict], int] = lambda s, a: 0
    macs: Callable[[tuple[int, ...], tuple[int, ...], dict], int] = lambda s, out, a: 0
    onnx: Callable[[Any, dict], str] | None = None  # (emitter, bound args) -> output tensor (module docstring)
    affine: Callable[[Callable[[str], Any]], tuple[Any, Any]] | None = None  # eval mode: per-channel (scale, shift)
    absorbs: tuple[str, str] | None = None  # (weight, bias) with the output channel on axis 0: folds an `affine`
    doc: str = ""
    param_names: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "param_names", tuple(p.name for p in self.params))

    def default(self, name: str) -> Any:
        return next(p.default for p in self.params if p.name == name)


RANK_WORDS = {1: "a flat input (F,)", 2: "a sequence input (C, L)", 3: "an image input (C, H, W)"}


def check_rank(prim: Primitive, shape: tuple[int, ...]) -> None:
    """Raise ShapeError unless `prim` takes inputs of `shape`'s rank."""
    if len(shape) in prim.ranks:
        return
    wanted = " or ".join(RANK_WORDS.get(r, f"a rank-{r} input") for r in prim.ranks)
    hint = {1: f"put 'flatten' (or a global 'avgpool' then 'flatten') before {prim.name}"}.get(
        prim.ranks[0], f"{prim.name} cannot follow flatten or linear; check the shape it is given")
    raise ShapeError(f"{prim.name} needs {wanted}, got shape {list(shape)}", hint=hint)


def _conv_shape(s, a):
    c, h, w = s
    if c % a["groups"] or a["out"] % a["groups"]:
        raise ShapeError(f"conv groups={a['groups']} must divide both {c} input and {a['out']} output channels",
                         hint="choose groups dividing both channel counts")
    k, st, p = a["k"], a["stride"], a["pad"]
    oh, ow = (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv k={k} does not fit the {h}x{w} input (pad={p})",
                         hint="use a smaller kernel k, or more padding pad=...")
    return (a["out"], oh, ow)


def _pool_shape(name):
    def shape(s, a):
        c, h, w = s
        if a.get("k") is None:  # global pooling
            return (c, 1, 1)
        k, st = a["k"], a.get("stride") or a["k"]
        if k > h or k > w:
            raise ShapeError(f"{name}({k}) does not fit the {h}x{w} input", hint="use a smaller window, or pool less earlier")
        return (c, (h - k) // st + 1, (w - k) // st + 1)

    return shape


def _avgpool_module(rank, a):
    if a["k"] is None:
        return TorchModule("AdaptiveAvgPool2d", (("output_size", Const(1)),), positional=1)
    return TorchModule("AvgPool2d", (("kernel_size", "k"), ("stride", "stride")), positional=1)


def _batchnorm_module(rank, a):
    return TorchModule("BatchNorm2d" if rank == 3 else "BatchNorm1d", (("num_features", IN_CHANNELS),), positional=1)


def _batchnorm_count(s, a):
    return 2 * s[0]  # weight and bias per channel (the running statistics are buffers)


# ---- ONNX rules (see the module docstring for `g`) ----

EPS = 1e-5  # torch's BatchNorm and LayerNorm default, which the compiled modules use


def _window(a) -> dict:
    k = a["k"]
    return {"kernel_shape": [k, k], "strides": [a["stride"] or k] * 2}


def _conv_onnx(g, a):
    return g.op("Conv", g.x, g.weight("weight"), *g.optional("bias"), kernel_shape=[a["k"]] * 2,
                strides=[a["stride"]] * 2, pads=[a["pad"]] * 4, group=a["groups"])


def _batchnorm_onnx(g, a):
    return g.op("BatchNormalization", g.x, g.weight("weight"), g.weight("bias"), g.weight("running_mean"),
                g.weight("running_var"), epsilon=EPS)


def _batchnorm_affine(t):
    scale = t("weight") / (t("running_var") + EPS) ** 0.5
    return scale, t("bias") - t("running_mean") * scale


def _gelu_onnx(g, a):  # torch's exact GELU: x * 0.5 * (1 + erf(x / sqrt(2)))
    erf = g.op("Erf", g.op("Mul", g.x, g.scalar(0.5 ** 0.5)))
    return g.op("Mul", g.op("Mul", g.x, g.scalar(0.5)), g.op("Add", erf, g.scalar(1.0)))


_pos = lambda v: v > 0  # noqa: E731
_prob = lambda v: 0 <= v < 1  # noqa: E731
_same = lambda s, a: s  # noqa: E731
_BIAS = Param("bias", bool, True, expect="true or false")
_ANY_RANK = (1, 2, 3)

PRIMITIVES: dict[str, Primitive] = {
    p.name: p
    for p in [
        Primitive(
            "conv",
            (
                Param("out", int, check=_pos, expect="a positive channel count"),
                Param("k", int, 3, _pos, "a positive kernel size"),
                Param("stride", int, 1, _pos, "a positive stride"),
                Param("pad", int, 0, lambda v: v >= 0, "a padding >= 0"),
                Param("groups", int, 1, _pos, "a positive group count"),
                _BIAS,
            ),
            (3,),
            _conv_shape,
            lambda rank, a: TorchModule("Conv2d", (("in_channels", IN_CHANNELS), ("out_channels", "out"),
                                                   ("kernel_size", "k"), ("stride", "stride"), ("padding", "pad"),
                                                   ("groups", "groups"), ("bias", "bias")), positional=2,
                                                  always=("kernel_size",)),
            channels="out",
            count=lambda s, a: a["out"] * (s[0] // a["groups"]) * a["k"] ** 2 + (a["out"] if a["bias"] else 0),
            macs=lambda s, out, a: out[0] * (s[0] // a["groups"]) * a["k"] ** 2 * out[1] * out[2],
            onnx=_conv_onnx,
            absorbs=("weight", "bias"),
            doc="2-D convolution (k x k kernel)",
        ),
        Primitive(
            "linear",
            (Param("out", int, check=_pos, expect="a positive feature count"), _BIAS),
            (1,),
            lambda s, a: (a["out"],),
            lambda rank, a: TorchModule("Linear", (("in_features", IN_CHANNELS), ("out_features", "out"),
                                                   ("bias", "bias")), positional=2),
            channels="out",
            count=lambda s, a: s[0] * a["out"] + (a["out"] if a["bias"] else 0),
            macs=lambda s, out, a: s[0] * out[0],
            onnx=lambda g, a: g.op("Gemm", g.x, g.weight("weight"), *g.optional("bias"), transB=1),
            absorbs=("weight", "bias"),
            doc="fully connected layer",
        ),
        Primitive("batchnorm", (), _ANY_RANK, _same, _batchnorm_module, count=_batchnorm_count,
                  onnx=_batchnorm_onnx, affine=_batchnorm_affine, doc="batch normalisation over channels"),
        Primitive("task_batchnorm", (), _ANY_RANK, _same, _batchnorm_module, count=_batchnorm_count, per_task=True,
                  onnx=_batchnorm_onnx, affine=_batchnorm_affine,
                  doc="batch normalisation over channels, one per task routed through the segment"),
        Primitive(
            "layernorm", (), _ANY_RANK, _same,
            lambda rank, a: TorchModule("LayerNorm", (("normalized_shape", IN_SHAPE),), positional=1),
            count=lambda s, a: 2 * prod(s),
            onnx=lambda g, a: g.op("LayerNormalization", g.x, g.weight("weight"), g.weight("bias"),
                                   axis=-len(g.in_shape), epsilon=EPS),
            doc="layer normalisation over all features",
        ),
        Primitive("relu", (), _ANY_RANK, _same, lambda rank, a: TorchModule("ReLU"),
                  onnx=lambda g, a: g.op("Relu", g.x), doc="ReLU"),
        Primitive("gelu", (), _ANY_RANK, _same, lambda rank, a: TorchModule("GELU"), onnx=_gelu_onnx, doc="GELU"),
        Primitive(
            "dropout", (Param("p", (int, float), 0.5, _prob, "a probability in [0, 1)"),), _ANY_RANK, _same,
            lambda rank, a: TorchModule("Dropout", (("p", "p"),), positional=1),
            onnx=lambda g, a: g.x,
            doc="dropout (train only)",
        ),
        Primitive(
            "maxpool",
            (Param("k", int, check=_pos, expect="a positive window"), Param("stride", int, None, _pos, "a positive stride")),
            (3,),
            _pool_shape("maxpool"),
            lambda rank, a: TorchModule("MaxPool2d", (("kernel_size", "k"), ("stride", "stride")), positional=1),
            onnx=lambda g, a: g.op("MaxPool", g.x, **_window(a)),
            doc="max pooling over k x k windows",
        ),
        Primitive(
            "avgpool",
            (Param("k", int, None, _pos, "a positive window"), Param("stride", int, None, _pos, "a positive stride")),
            (3,),
            _pool_shape("avgpool"),
            _avgpool_module,
            onnx=lambda g, a: g.op("GlobalAveragePool", g.x) if a["k"] is None else g.op("AveragePool", g.x, **_window(a)),
            doc="average pooling; with no window, global average pooling",
        ),
        Primitive("flatten", (), _ANY_RANK, lambda s, a: (prod(s),), lambda rank, a: TorchModule("Flatten"),
                  channels=None, onnx=lambda g, a: g.op("Flatten", g.x, axis=1), doc="flatten to a vector"),
    ]
}


def module_path(container: str, position: int, op: str, task: str | None = None) -> str:
    """Where the compiled model keeps layer `position` of a segment, stem, head or `then` at `container`.

    `container` is the module path of the layer sequence (`levels.l2.5`,
    `stems.t`, `heads.t`, `posts.l2`); a per-task primitive keeps one
    module per task under the task's name (`levels.l2.5.1.t`). Exports and
    codegen name weights by it; the compiler builds by it.
    """
    path = f"{container}.{position}"
    return f"{path}.{task}" if PRIMITIVES[op].per_task and task is not None else path


def output_shape(prim: Primitive, shape: tuple[int, ...], args: dict[str, Any]) -> tuple[int, ...]:
    """The layer's output shape for input `shape`; ShapeError when it cannot take that input."""
    check_rank(prim, shape)
    return tuple(prim.shape(shape, args))


def torch_arguments(prim: Primitive, in_shape: tuple[int, ...], args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(torch.nn class name, constructor keyword arguments) of a bound layer on input `in_shape`."""
    module = prim.torch(len(in_shape), args)
    kwargs = {}
    for torch_name, source in module.args:
        if source == IN_CHANNELS:
            kwargs[torch_name] = in_shape[0]
        elif source == IN_SHAPE:
            kwargs[torch_name] = list(in_shape)
        elif isinstance(source, Const):
            kwargs[torch_name] = source.value
        elif args[source] is not None:
            kwargs[torch_name] = args[source]
    return module.cls, kwargs


def bind_args(prim: Primitive, positional: list[Any], keywords: dict[str, Any]) -> dict[str, Any]:
    """Bind call arguments to a primitive's parameters; raise ArgumentError on misuse.

    Messages name parameters and expectations only: the caller shows the
    value as the spec wrote it (`ArgumentError.param` says which argument).
    """
    names = prim.param_names
    if len(positional) > len(names):
        raise ArgumentError(f"{prim.name} takes at most {len(names)} positional argument(s), got {len(positional)}")
    bound = dict(zip(names, positional, strict=False))
    for key, value in keywords.items():
        if key not in names:
            valid = ", ".join(names) if names else "none"
            raise ArgumentError(f"{prim.name} has no argument '{key}' (its arguments: {valid})", key)
        if key in bound:
            raise ArgumentError(f"{prim.name} got argument '{key}' twice", key)
        bound[key] = value
    for p in prim.params:
        if p.name not in bound:
            if p.default is REQUIRED:
                raise ArgumentError(f"{prim.name} needs argument '{p.name}' ({p.expect or p.kind.__name__})")
            bound[p.name] = p.default
            continue
        value = bound[p.name]
        kinds = p.kind if isinstance(p.kind, tuple) else (p.kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok or (p.check is not None and value is not None and not p.check(value)):
            what = p.expect or " or ".join(k.__name__ for k in kinds)
            raise ArgumentError(f"{prim.name} argument '{p.name}' must be {what}", p.name)
    return {n: bound[n] for n in names}
