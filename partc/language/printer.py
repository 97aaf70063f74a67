"""The spec printer: AST (and plain values) -> spec text, the one way partc writes the language.

Error messages show values with `value_text` (as the spec writes them:
`true`, `[0, 1]`, `2e-3`, `adam(lr=1e-3)`, never a Python repr), codegen
comments show layers with `call_text`, the no-sharing baseline and
`partc extend` print whole specs with `spec_text`, and `partc fmt` lays a
spec out canonically with its comments kept (`format_spec`).

Canonical layout (idempotent: formatting formatted text changes nothing):
two-space indents; one statement per line; spaces after commas and around
`=` of a level, none inside brackets; a block (`task`, `train`, `segment`)
stays on one line when the source wrote it on one line and it fits in
`WIDTH` columns, and is otherwise written one item per line (a `stem` or
`head` block inside a task is one item); runs of consecutive one-line `segment` and
`level` statements are aligned into columns, as are trailing comments of
consecutive lines; blank lines between statements are kept (several as
one); comments are kept verbatim, trailing or on their own line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from partc.ir import Layer, ParamRef, SegmentGroup
from partc.language import ast
from partc.layers import PRIMITIVES

WIDTH = 120
INDENT = "  "


# ---- values -------------------------------------------------------------------------------------

def value_text(value: Any, written: bool = True) -> str:
    """A value (from the AST, or plain Python) as the spec language writes it.

    A float literal prints as the spec wrote it (`2e-3`), or with `written=False`
    in one canonical form (`0.002`), for text that must not depend on how it was written.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, ast.Float) and written:
        return value.text
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, ast.Range):
        return f"{value.lo}..{value.hi}"
    if isinstance(value, (ast.Ref, ParamRef)):
        return value.name
    if isinstance(value, ast.Call):
        return call_text(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v, written) for v in value) + "]"
    if isinstance(value, dict) and "name" in value:  # a call kept as plain data by the checker
        args = [value_text(v, written) for v in value.get("args", [])]
        args += [f"{k}={value_text(v, written)}" for k, v in value.get("kwargs", {}).items()]
        return f"{value['name']}({', '.join(args)})" if args else value["name"]
    return str(value)


def _float_text(value: float) -> str:
    """Shortest round-trip text in the spec's number syntax: 0.5, 2e-05 -> 2e-5, 1e+20 -> 1e20."""
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        return text
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def args_text(args: list[ast.Arg]) -> str:
    return ", ".join(value_text(a.value) if a.name is None else f"{a.name}={value_text(a.value)}" for a in args)


def call_text(call: ast.Call) -> str:
    """`name(args)` as written; a call without arguments is its bare name (`relu`)."""
    return f"{call.name}({args_text(call.args)})" if call.args else call.name


def layer_text(layer: Layer, written: bool = True) -> str:
    """A bound layer as a spec would write it: defaults left out, the first argument positional."""
    params = PRIMITIVES[layer.op].params
    shown = []
    for p in params:
        value = layer.args.get(p.name, p.default)
        if value == p.default:
            continue
        first = not shown and p is params[0]
        shown.append(value_text(value, written) if first else f"{p.name}={value_text(value, written)}")
    return f"{layer.op}({', '.join(shown)})" if shown else layer.op


def group_text(group: SegmentGroup, written: bool = True) -> str:
    """A level's segment kind: `block(64)`, or the layer itself when the level uses one directly."""
    if not group.template_args and len(group.layers) == 1 and group.layers[0].op == group.template:
        return layer_text(group.layers[0], written)
    args = ", ".join(value_text(v, written) for v in group.template_args.values())
    return f"{group.template}({args})" if args or group.template_args else group.template


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


# ---- statements ---------------------------------------------------------------------------------

def block_text(layers: list[ast.Call]) -> str:
    return "{ " + "; ".join(call_text(c) for c in layers) + " }" if layers else "{ }"


def index_text(items: list[int | ast.Range]) -> str:
    return ", ".join(value_text(i) for i in items)


def path_text(items: list[ast.PathItem]) -> str:
    parts = []
    for item in items:
        if item.kind == "random":
            parts.append(f"random({item.count})")
        elif item.kind == "level_random":
            parts.append(f"{item.level} random({item.count})")
        else:
            parts.append(f"{item.level}[{index_text(item.items)}]")
    return " ".join(parts)


def level_refs_text(refs: list[ast.LevelRef]) -> str:
    return ", ".join(f"{r.first}..{r.last}" if r.last else r.first for r in refs)


def input_text(decl: ast.InputDecl) -> str:
    return f"input {decl.name}: {decl.dtype}{shape_text(decl.shape)}"


def segment_head(seg: ast.SegmentDef) -> str:
    return f"segment {seg.name}({', '.join(seg.params)})" if seg.params else f"segment {seg.name}"


def level_parts(level: ast.LevelDef) -> tuple[str, str, str]:
    """(`level NAME = groups`, `residual` or "", `then ...` or ""): the columns of an aligned level line."""
    groups = " + ".join(f"{g.count} x {call_text(g.template)}" for g in level.groups)
    then = "then " + ", ".join(call_text(c) for c in level.then) if level.then else ""
    return f"level {level.name} = {groups}", "residual" if level.residual else "", then


def constraint_text(c: ast.Constraint) -> str:
    names = ", ".join(name for name, _ in c.tasks)
    return f"{c.kind} {names}" + (f" at {level_refs_text(c.levels)}" if c.levels else "")


def task_items(t: ast.TaskDef) -> list[tuple[str, ast.Location | None]]:
    """A task's statements with where each is written (the printer keeps their source order)."""
    items: list[tuple[str, ast.Location | None]] = []
    if t.input is not None:
        items.append((f"input {t.input[0]}", t.input[1]))
    if isinstance(t.stem, ast.Call):
        items.append((f"stem {call_text(t.stem)}", t.stem.loc))
    elif t.stem is not None:
        items.append((f"stem {block_text(t.stem)}", t.stem[0].loc if t.stem else None))
    if t.data is not None:
        items.append((f"data {call_text(t.data)}", t.data.loc))
    if t.classes is not None:
        items.append((f"classes {value_text(t.classes.value)}", t.classes.loc))
    if t.head is not None:
        items.append((f"head {block_text(t.head)}", t.head[0].loc if t.head else None))
    items += [(f"{key} {value_text(arg.value)}", arg.loc) for key, arg in t.settings.items()]
    if t.path:
        items.append((f"path {path_text(t.path)}", t.path[0].loc))
    return items


def spec_text(tree: ast.Network) -> str:
    """The whole spec, canonically laid out, without comments (for specs partc writes itself)."""
    return format_spec(tree, comments=[])


# ---- partc fmt ----------------------------------------------------------------------------------

@dataclass
class Comment:
    line: int
    column: int
    text: str  # from '#' or '//' to the end of the line, trailing spaces removed
    own_line: bool  # nothing but space before it on its line


def scan_comments(text: str) -> list[Comment]:
    """Every comment in spec text. Strings never span lines and hold no escapes, so a line scan is exact."""
    found = []
    for number, line in enumerate(text.split("\n"), 1):
        in_string = False
        for col, ch in enumerate(line):
            if ch == '"':
                in_string = not in_string
            elif not in_string and (ch == "#" or line.startswith("//", col)):
                found.append(Comment(number, col + 1, line[col:].rstrip(), not line[:col].strip()))
                break
    return found


@dataclass
class _Line:
    """One output line: its text (or aligned columns), its source line span and a trailing comment."""

    depth: int
    text: str
    first: int = 0  # the source lines it stands for
    last: int = 0
    columns: tuple[str, ...] | None = None  # an alignable statement: its parts
    kind: str = ""  # "segment" | "level": runs of one kind align
    comment: str = ""
    blank_before: bool = False
    pad: int = 2  # spaces before the trailing comment


def format_spec(tree: ast.Network, comments: list[Comment] | None = None, source: str | None = None) -> str:
    """The canonical text of a parsed spec, with `comments` (default: those of its source) put back.

    `source` (default: the tree's own) tells where blank lines and line breaks were.
    """
    source = tree.source if source is None else source
    if comments is None:
        comments = scan_comments(source)
    return _Layout(source.split("\n"), comments).render(tree)


class _Layout:
    """Walks the statements in source order, placing each comment at the statement it sits on or above."""

    def __init__(self, src_lines: list[str], comments: list[Comment]):
        self.src = src_lines
        self.comments = sorted(comments, key=lambda c: (c.line, c.column))
        self.lines: list[_Line] = []

    def _end_line(self, start: int) -> int:
        """The line of the '}' closing the first '{' on or after line `start` (comments and strings skipped)."""
        depth = 0
        for number in range(start, len(self.src) + 1):
            line, in_string = self.src[number - 1], False
            for col, ch in enumerate(line):
                if ch == '"':
                    in_string = not in_string
                elif in_string:
                    continue
                elif ch == "#" or line.startswith("//", col):
                    break
                elif ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        return number
        return start

    def _blank_above(self, line: int, floor: int) -> bool:
        return line - 1 > floor and not self.src[line - 2].strip()

    def _take(self, first: int, last: int, own_line: bool | None = None, exclude: frozenset[int] = frozenset()
              ) -> list[Comment]:
        taken = [c for c in self.comments if first <= c.line <= last and c.line not in exclude
                 and (own_line is None or c.own_line == own_line)]
        for c in taken:
            self.comments.remove(c)
        return taken

    def _comments_above(self, line: int, depth: int, floor: int) -> None:
        for c in self._take(floor + 1, line - 1, own_line=True):
            self.lines.append(_Line(depth, c.text, c.line, c.line, blank_before=self._blank_above(c.line, floor)))
            floor = c.line

    def _statement(self, depth: int, start: int, end: int, text: str, floor: int, *, columns=None, kind: str = "",
                   later: frozenset[int] = frozenset()) -> int:
        """One output line. A trailing comment on a line where a later statement starts is that statement's."""
        self._comments_above(start, depth, floor)
        trailing = " ".join(c.text for c in self._take(start, end, exclude=later))
        self.lines.append(_Line(depth, text, start, end, columns=columns, kind=kind, comment=trailing,
                                blank_before=self._blank_above(start, floor)))
        return end

    def _block(self, depth: int, start: int, header: str, items: list[tuple[str, tuple[int, int]]], floor: int,
               columns: tuple[str, ...] | None = None, kind: str = "", separator: str = "; ",
               later: frozenset[int] = frozenset()) -> int:
        """`header { items }`: one line when the source had it on one line and it fits, else one item per line.

        A comment inside braces runs to the end of its line, so a block the
        source wrote on one line holds none: only a trailing one after it.
        Items keep their source order.
        """
        end = self._end_line(start)
        items = sorted(items, key=lambda item: item[1])
        texts = [text.removesuffix(";") for text, _ in items]
        one = f"{header} {{ {separator.join(texts)} }}" if items else f"{header} {{ }}"
        if end == start and len(INDENT * depth + one) <= WIDTH:
            return self._statement(depth, start, end, one, floor, columns=columns, kind=kind, later=later)
        self._comments_above(start, depth, floor)
        starts = [max(line, start + 1) if line else 0 for _, (line, _) in items]
        trailing = " ".join(c.text for c in self._take(start, start, own_line=False, exclude=frozenset(starts)))
        self.lines.append(_Line(depth, f"{header} {{", start, start, comment=trailing,
                                blank_before=self._blank_above(start, floor)))
        inner = start
        for k, (text, _) in enumerate(items):
            line = max(starts[k], inner + 1)
            inner = self._statement(depth + 1, line, line, text, inner, later=frozenset(starts[k + 1:]))
        self._comments_above(end, depth + 1, inner)
        leftover = " ".join(c.text for c in self._take(start + 1, end, exclude=later))  # trailing, no item's
        self.lines.append(_Line(depth, "}", end, end, comment=leftover))
        return end

    def render(self, tree: ast.Network) -> str:
        top = tree.loc.line
        self._comments_above(top, 0, 0)
        above = self.lines[-1].last if self.lines else 0
        statements = _statements(tree)
        starts = [_start_line(kind, node) for kind, node in statements]
        trailing = " ".join(c.text for c in self._take(top, top, own_line=False, exclude=frozenset(starts)))
        self.lines.append(_Line(0, f"network {tree.name} {{", top, top, comment=trailing,
                                blank_before=self._blank_above(top, above)))
        floor = top
        for k, (kind, node) in enumerate(statements):
            floor = self._top_statement(kind, node, floor, frozenset(starts[k + 1:]))
        end = max(self._end_line(top), floor)
        self._comments_above(end, 1, floor)
        trailing = " ".join(c.text for c in self._take(floor + 1, end, own_line=False))
        self.lines.append(_Line(0, "}", end, end, comment=trailing))
        for c in self._take(end + 1, len(self.src) + 1):
            self.lines.append(_Line(0, c.text, c.line, c.line, blank_before=self._blank_above(c.line, end)))
            end = c.line
        return _join(self.lines)

    def _top_statement(self, kind: str, node: Any, floor: int, later: frozenset[int]) -> int:
        line = _start_line(kind, node)
        if kind == "input":
            return self._statement(1, line, line, input_text(node), floor, later=later)
        if kind == "seed":
            return self._statement(1, line, line, f"seed {node[0]}", floor, later=later)
        if kind == "segment":
            head = segment_head(node)
            # layers need ';' between them, also one per line
            items = [_item(call_text(c) + (";" if i < len(node.layers) - 1 else ""), c.loc)
                     for i, c in enumerate(node.layers)]
            return self._block(1, line, head, items, floor, columns=(head, block_text(node.layers)), kind="segment",
                               later=later)
        if kind == "level":
            end = max([line] + [g.loc.line for g in node.groups] + [c.loc.line for c in node.then])
            parts = level_parts(node)
            return self._statement(1, line, end, " ".join(p for p in parts if p), floor, columns=parts, kind="level",
                                   later=later)
        if kind == "task":
            items = [_item(text, loc) for text, loc in task_items(node)]
            return self._block(1, line, f"task {node.name}", items, floor, separator=" ", later=later)
        if kind == "constraint":
            return self._statement(1, line, line, constraint_text(node), floor, later=later)
        if kind == "train":
            settings = [_item(f"{s.name} {value_text(s.value)}", s.loc) for s in node[0]]
            return self._block(1, line, "train", settings, floor, later=later)
        raise ValueError(f"unknown statement kind {kind}")  # a bug: _statements makes no other


def _start_line(kind: str, node: Any) -> int:
    return node[1].line if kind in ("seed", "train") else node.loc.line


def _item(text: str, loc: ast.Location | None) -> tuple[str, tuple[int, int]]:
    return text, (loc.line, loc.column) if loc else (0, 0)


def _statements(tree: ast.Network) -> list[tuple[str, Any]]:
    """Top-level statements in source order."""
    found: list[tuple[tuple[int, int], str, Any]] = []
    found += [((d.loc.line, d.loc.column), "input", d) for d in tree.inputs]
    found += [((loc.line, loc.column), "seed", (value, loc)) for value, loc in tree.seeds]
    found += [((s.loc.line, s.loc.column), "segment", s) for s in tree.segments]
    found += [((lv.loc.line, lv.loc.column), "level", lv) for lv in tree.levels]
    found += [((t.loc.line, t.loc.column), "task", t) for t in tree.tasks]
    found += [((c.loc.line, c.loc.column), "constraint", c) for c in tree.constraints]
    if tree.train_loc is not None:
        found.append(((tree.train_loc.line, tree.train_loc.column), "train", (tree.train, tree.train_loc)))
    return [(kind, node) for _, kind, node in sorted(found, key=lambda f: f[0])]


def _join(lines: list[_Line]) -> str:
    """Pad aligned runs, align trailing comments of consecutive lines, add the blank lines, join."""
    _align_columns(lines)
    _align_comments(lines)
    out: list[str] = []
    for line in lines:
        if line.blank_before and out and out[-1] != "":
            out.append("")
        text = INDENT * line.depth + line.text
        if line.comment:
            text = f"{text}{' ' * line.pad}{line.comment}"
        out.append(text.rstrip())
    return "\n".join(out) + "\n"


def _runs(lines: list[_Line], same) -> list[list[_Line]]:
    """Maximal runs of consecutive lines (no blank line between) for which `same(previous, line)` holds."""
    runs: list[list[_Line]] = []
    for line in lines:
        if runs and not line.blank_before and same(runs[-1][-1], line):
            runs[-1].append(line)
        else:
            runs.append([line])
    return runs


def _align_columns(lines: list[_Line]) -> None:
    """Consecutive one-line segments or levels as a table: each column padded to the run's widest."""
    alignable = lambda a, b: bool(a.columns and b.columns) and a.kind == b.kind and a.text.count("{") <= 1  # noqa: E731
    for run in _runs(lines, alignable):
        if not run[0].columns or len(run) < 2:
            continue
        count = max(len(line.columns) for line in run)
        used = [i for i in range(count) if any(i < len(line.columns) and line.columns[i] for line in run)]
        widths = {i: max(len(line.columns[i]) for line in run if i < len(line.columns)) for i in used}
        for line in run:
            last = max((i for i in used if i < len(line.columns) and line.columns[i]), default=used[0])
            parts = [line.columns[i].ljust(widths[i]) if i < last else line.columns[i] for i in used if i <= last]
            line.text = " ".join(parts)


def _align_comments(lines: list[_Line]) -> None:
    """Trailing comments of consecutive statement lines start in one column."""
    for run in _runs(lines, lambda a, b: bool(a.comment and a.text and b.comment and b.text) and a.depth == b.depth):
        if len(run) < 2 or not (run[0].comment and run[0].text):
            continue
        width = max(len(line.text) for line in run)
        for line in run:
            line.pad = width - len(line.text) + 2
