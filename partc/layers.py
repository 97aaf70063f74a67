"""The layer primitives a segment is built from: signature, shape rule, size.

Torch-free on purpose: `partc check` must stay fast, so shape inference and
parameter counting live here as plain arithmetic, and the compile stage maps
each primitive onto its torch module (`partc.compiler.modules`).

Shapes exclude the batch axis: an image is (C, H, W), a feature vector (F,).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import prod
from typing import Any

REQUIRED = object()


class ShapeError(ValueError):
    """A layer cannot take the shape it is given; the message says why, `hint` what would work."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Param:
    name: str
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    check: Callable[[Any], bool] | None = None
    expect: str = ""


@dataclass(frozen=True)
class Primitive:
    name: str
    params: tuple[Param, ...]
    shape: Callable[[tuple[int, ...], dict], tuple[int, ...]]
    count: Callable[[tuple[int, ...], dict], int] = lambda s, a: 0
    doc: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


def _need_image(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise ShapeError(f"{name} needs an image input (C, H, W), got shape {list(shape)}",
                         f"{name} cannot follow flatten or linear; check the shape it is given")


def _conv_shape(s, a):
    _need_image("conv", s)
    c, h, w = s
    if c % a["groups"] or a["out"] % a["groups"]:
        raise ShapeError(f"conv groups={a['groups']} must divide both {c} input and {a['out']} output channels",
                         "choose groups dividing both channel counts")
    k, st, p = a["k"], a["stride"], a["pad"]
    oh, ow = (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv k={k} does not fit the {h}x{w} input (pad={p})",
                         "use a smaller kernel k, or more padding pad=...")
    return (a["out"], oh, ow)


def _conv_count(s, a):
    return a["out"] * (s[0] // a["groups"]) * a["k"] ** 2 + (a["out"] if a["bias"] else 0)


def _linear_shape(s, a):
    if len(s) != 1:
        raise ShapeError(f"linear needs a flat input (F,), got shape {list(s)}",
                         "put 'flatten' (or a global 'avgpool' then 'flatten') before linear")
    return (a["out"],)


def _pool_shape(name):
    def shape(s, a):
        _need_image(name, s)
        c, h, w = s
        if a.get("k") is None:  # global pooling
            return (c, 1, 1)
        k, st = a["k"], a.get("stride") or a["k"]
        if k > h or k > w:
            raise ShapeError(f"{name}({k}) does not fit the {h}x{w} input", "use a smaller window, or pool less earlier")
        return (c, (h - k) // st + 1, (w - k) // st + 1)

    return shape


_pos = lambda v: v > 0  # noqa: E731
_prob = lambda v: 0 <= v < 1  # noqa: E731
_same = lambda s, a: s  # noqa: E731

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
                Param("bias", bool, True, expect="true or false"),
            ),
            _conv_shape,
            _conv_count,
            "2-D convolution (k x k kernel)",
        ),
        Primitive(
            "linear",
            (Param("out", int, check=_pos, expect="a positive feature count"), Param("bias", bool, True, expect="true or false")),
            _linear_shape,
            lambda s, a: s[0] * a["out"] + (a["out"] if a["bias"] else 0),
            "fully connected layer",
        ),
        Primitive("batchnorm", (), _same, lambda s, a: 2 * s[0], "batch normalisation over channels"),
        Primitive("layernorm", (), _same, lambda s, a: 2 * prod(s), "layer normalisation over all features"),
        Primitive("relu", (), _same, doc="ReLU"),
        Primitive("gelu", (), _same, doc="GELU"),
        Primitive("dropout", (Param("p", (int, float), 0.5, _prob, "a probability in [0, 1)"),), _same,
                  doc="dropout (train only)"),
        Primitive(
            "maxpool",
            (Param("k", int, check=_pos, expect="a positive window"), Param("stride", int, None, _pos, "a positive stride")),
            _pool_shape("maxpool"),
            doc="max pooling over k x k windows",
        ),
        Primitive(
            "avgpool",
            (Param("k", int, None, _pos, "a positive window"), Param("stride", int, None, _pos, "a positive stride")),
            _pool_shape("avgpool"),
            doc="average pooling; with no window, global average pooling",
        ),
        Primitive("flatten", (), lambda s, a: (prod(s),), doc="flatten to a vector"),
    ]
}


def bind_args(prim: Primitive, positional: list[Any], keywords: dict[str, Any]) -> dict[str, Any]:
    """Bind call arguments to a primitive's parameters; raise ValueError on misuse."""
    names = [p.name for p in prim.params]
    if len(positional) > len(names):
        raise ValueError(
            f"{prim.name} takes at most {len(names)} positional argument(s), got {len(positional)}"
        )
    bound = dict(zip(names, positional, strict=False))
    for key, value in keywords.items():
        if key not in names:
            valid = ", ".join(names) if names else "none"
            raise ValueError(f"{prim.name} has no argument '{key}' (its arguments: {valid})")
        if key in bound:
            raise ValueError(f"{prim.name} got argument '{key}' twice")
        bound[key] = value
    for p in prim.params:
        if p.name not in bound:
            if p.default is REQUIRED:
                raise ValueError(f"{prim.name} needs argument '{p.name}' ({p.expect or p.kind.__name__})")
            bound[p.name] = p.default
            continue
        value = bound[p.name]
        kinds = p.kind if isinstance(p.kind, tuple) else (p.kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok or (p.check is not None and value is not None and not p.check(value)):
            what = p.expect or " or ".join(k.__name__ for k in kinds)
            raise ValueError(f"{prim.name} argument '{p.name}' must be {what}, got {show_value(value)}")
    return {n: bound[n] for n in names}


def signature(prim: Primitive) -> str:
    parts = []
    for p in prim.params:
        parts.append(p.name if p.default is REQUIRED else f"{p.name}={show_value(p.default)}")
    return f"{prim.name}({', '.join(parts)})" if parts else prim.name


def show_value(value: Any) -> str:
    """A value as the spec language writes it: true, none, [1, 2], "text"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    name = getattr(value, "name", None)  # an AST call or name used as a value
    return f"{name}(...)" if hasattr(value, "args") else str(name or value)
