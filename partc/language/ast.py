"""Stage 1 product: the AST of a .part spec, small dataclasses with locations.

The parser (`partc.language.parser.parse`) builds these; the passes read
them. Every node keeps `loc` so later errors can point at the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from partc.errors import Location


class Float(float):
    """A float literal that remembers how the spec wrote it, so the printer writes `2e-3` back, not `0.002`."""

    __slots__ = ("text",)

    def __new__(cls, text: str):
        value = super().__new__(cls, text)
        value.text = text
        return value

    def __neg__(self) -> Float:
        return Float(self.text[1:] if self.text.startswith("-") else "-" + self.text)

    def __repr__(self) -> str:
        return self.text

    def __reduce__(self):  # pickles (and deep-copies) as a plain float: no partc class in a checkpoint
        return (float, (float(self),))


@dataclass(frozen=True)
class Range:
    """`lo..hi`, inclusive on both ends (as written: `classes=0..9`)."""

    lo: int
    hi: int

    def values(self) -> list[int]:
        return list(range(self.lo, self.hi + 1))


@dataclass(frozen=True)
class Ref:
    """A bare name used as a value (a template parameter, an enum word)."""

    name: str
    loc: Location


@dataclass
class Call:
    """`name(args...)`: a layer, a segment template use, a data source."""

    name: str
    args: list[Arg]
    loc: Location

    def positional(self) -> list[Arg]:
        return [a for a in self.args if a.name is None]

    def keywords(self) -> dict[str, Arg]:
        return {a.name: a for a in self.args if a.name is not None}


@dataclass
class Arg:
    name: str | None  # None for a positional argument
    value: Any  # int, float, str, bool, list, Range, Ref or Call
    loc: Location


@dataclass
class InputDecl:
    name: str
    dtype: str
    shape: tuple[int, ...]
    loc: Location


@dataclass
class SegmentDef:
    name: str
    params: list[str]
    layers: list[Call]
    loc: Location


@dataclass
class SegmentGroup:
    count: int
    template: Call
    loc: Location


@dataclass
class LevelDef:
    name: str
    groups: list[SegmentGroup]
    residual: bool
    then: list[Call]
    loc: Location


@dataclass
class PathItem:
    kind: str  # "random" (all levels not given), "explicit", "level_random"
    level: str | None
    count: int | None
    items: list[int | Range] | None  # explicit indices as written: 3 or 5..7
    loc: Location

    @property
    def indices(self) -> list[int] | None:
        """The explicit indices, ranges expanded."""
        if self.items is None:
            return None
        return [i for item in self.items for i in (item.values() if isinstance(item, Range) else [item])]


@dataclass
class TaskDef:
    name: str
    loc: Location
    data: Call | None = None
    path: list[PathItem] = field(default_factory=list)
    input: tuple[str, Location] | None = None
    stem: list[Call] | Call | None = None
    head: list[Call] | None = None
    classes: Arg | None = None
    settings: dict[str, Arg] = field(default_factory=dict)


@dataclass
class LevelRef:
    first: str
    last: str | None  # set for a range `l1..l3`
    loc: Location


@dataclass
class Constraint:
    kind: str  # "share" or "private"
    tasks: list[tuple[str, Location]]
    levels: list[LevelRef]  # empty: every level
    loc: Location


@dataclass
class Setting:
    name: str
    value: Any
    loc: Location


@dataclass
class Network:
    name: str
    loc: Location
    file: str
    source: str
    inputs: list[InputDecl] = field(default_factory=list)
    seeds: list[tuple[int, Location]] = field(default_factory=list)
    segments: list[SegmentDef] = field(default_factory=list)
    levels: list[LevelDef] = field(default_factory=list)
    tasks: list[TaskDef] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    train: list[Setting] = field(default_factory=list)
    train_loc: Location | None = None
