"""Language stage, AST building: Lark's reductions -> `ast.Network`, collecting structural errors.

The builder is Lark's inline transformer: the LALR parser calls one method
per rule as it reduces (no parse tree is built, and nothing recurses), so
parsing is one pass over the tokens. Lark keeps every token for it
(`keep_all_tokens`): each method's span runs from its first token to its
last, which gives every node its `Location`; the methods see only the named
tokens (NAME, INT, ...) and their sub-rules' values, keywords and brackets
filtered out. Numbers keep how they were written (`ast.Float`), explicit
path indices keep their ranges, so the printer can write the spec back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lark import Token

from partc.errors import Location, PartError, SpecSyntaxError
from partc.language import ast
from partc.language.reading import location

MAX_DIGITS = 15  # longest integer literal
MAX_RANGE = 100_000  # longest `lo..hi` (class lists, segment indices)

# The grammar's named terminals, whose tokens the methods see; its string literals ("task", "{", ...) are
# anonymous and dropped. (Every named terminal of part.lark is a regular expression.)
KEPT = frozenset({"NAME", "INT", "FLOAT", "STRING", "SETTING_KEY"})


class Part:
    """What a rule reduced to: its value, and its first and last token (for the spans of the rules above it)."""

    __slots__ = ("value", "first", "last")

    def __init__(self, value: Any, first: Token, last: Token):
        self.value, self.first, self.last = value, first, last


def rule(method: Callable) -> Callable:
    """A builder method as Lark's callback: children -> Part(method(values, first token, last token))."""

    def callback(self, children: list) -> Part:
        head, tail = children[0], children[-1]
        first = head if type(head) is not Part else head.first
        last = tail if type(tail) is not Part else tail.last
        values = [c.value if type(c) is Part else c for c in children if type(c) is Part or c.type in KEPT]
        return Part(method(self, values, first, last), first, last)

    callback.__name__ = method.__name__
    return callback


class AstBuilder:
    """Builds AST dataclasses during the parse; collects structural errors. One parse at a time (`begin`)."""

    def __init__(self) -> None:
        self.begin("<spec>", [], "")

    def begin(self, file: str, lines: list[str], source: str) -> None:
        self.file, self.lines, self.source = file, lines, source
        self.errors: list[PartError] = []

    def _at(self, first: Token, last: Token | None = None) -> Location:
        last = first if last is None else last
        return location(self.file, self.lines, first.line, first.column,
                        last.end_column if last.end_line == first.line else None)

    def _int(self, token: Token) -> int:
        # Python refuses int() on strings of thousands of digits; nothing in a
        # spec needs more than a handful.
        if len(token) > MAX_DIGITS:
            self.errors.append(SpecSyntaxError(f"number {token[:12]}... is too large", self._at(token),
                                               f"use at most {MAX_DIGITS} digits"))
            return 0
        return int(token)

    def _range(self, loc: Location, lo: int, hi: int, what: str) -> range:
        if hi < lo:
            self.errors.append(SpecSyntaxError(f"empty {what} {lo}..{hi}", loc, f"write {hi}..{lo}"))
        elif hi - lo >= MAX_RANGE:
            self.errors.append(SpecSyntaxError(f"{what} {lo}..{hi} is too long", loc,
                                               f"a range spans at most {MAX_RANGE:,} values"))
            return range(0)
        return range(lo, hi + 1)

    # ---- values ----
    @rule
    def int(self, c, first, last):
        return self._int(c[0])

    @rule
    def float(self, c, first, last):
        return ast.Float(str(c[0]))

    @rule
    def neg_int(self, c, first, last):
        return -self._int(c[0])

    @rule
    def neg_float(self, c, first, last):
        return -ast.Float(str(c[0]))

    @rule
    def string(self, c, first, last):
        return str(c[0])[1:-1]

    @rule
    def list(self, c, first, last):
        return list(c)

    @rule
    def range(self, c, first, last):
        r = self._range(self._at(first, last), self._int(c[0]), self._int(c[1]), "range")
        return ast.Range(r.start, r.stop - 1) if r else ast.Range(0, -1)

    @rule
    def true(self, c, first, last):
        return True

    @rule
    def false(self, c, first, last):
        return False

    @rule
    def name(self, c, first, last):
        return ast.Ref(str(c[0]), self._at(c[0]))

    @rule
    def call_value(self, c, first, last):
        return ast.Call(str(c[0]), c[1], self._at(first, last))

    @rule
    def positional_arg(self, c, first, last):
        return ast.Arg(None, c[0], self._at(first, last))

    @rule
    def keyword_arg(self, c, first, last):
        return ast.Arg(str(c[0]), c[1], self._at(first, last))

    @rule
    def arg_list(self, c, first, last):
        seen = set()
        for arg in c:
            if arg.name is not None and arg.name in seen:
                self.errors.append(SpecSyntaxError(f"argument '{arg.name}' is given twice", arg.loc,
                                                   f"keep one '{arg.name}=...'"))
            seen.add(arg.name)
        return list(c)

    @rule
    def call(self, c, first, last):
        return ast.Call(str(c[0]), c[1] if len(c) > 1 else [], self._at(first, last))

    layer = call

    @rule
    def layer_block(self, c, first, last):
        return list(c)

    @rule
    def int_list(self, c, first, last):
        return tuple(self._int(t) for t in c)

    @rule
    def param_list(self, c, first, last):
        return [str(t) for t in c]

    # ---- declarations ----
    @rule
    def input_decl(self, c, first, last):
        return ast.InputDecl(str(c[0]), str(c[1]), c[2], self._at(first, last))

    @rule
    def seed_decl(self, c, first, last):
        return ("seed", self._int(c[0]), self._at(first, last))

    @rule
    def segment_def(self, c, first, last):
        params = c[1] if len(c) == 3 else []
        return ast.SegmentDef(str(c[0]), params, c[-1], self._at(first, last))

    @rule
    def residual(self, c, first, last):
        return "residual"

    @rule
    def then_ops(self, c, first, last):
        return ("then", list(c))

    @rule
    def segment_group(self, c, first, last):
        return ast.SegmentGroup(self._int(c[0]), c[1], self._at(first, last))

    @rule
    def level_def(self, c, first, last):
        groups = [x for x in c[1:] if isinstance(x, ast.SegmentGroup)]
        residual = "residual" in c[1:]
        then = next((x[1] for x in c[1:] if isinstance(x, tuple)), [])
        return ast.LevelDef(str(c[0]), groups, residual, then, self._at(first, last))

    # ---- tasks ----
    @rule
    def path_random(self, c, first, last):
        return ast.PathItem("random", None, self._int(c[0]), None, self._at(first, last))

    @rule
    def path_level_random(self, c, first, last):
        return ast.PathItem("level_random", str(c[0]), self._int(c[1]), None, self._at(first, last))

    @rule
    def path_explicit(self, c, first, last):
        return ast.PathItem("explicit", str(c[0]), None, c[1], self._at(first, last))

    @rule
    def index_item(self, c, first, last):
        return self._int(c[0])

    @rule
    def index_range(self, c, first, last):
        r = self._range(self._at(first, last), self._int(c[0]), self._int(c[1]), "index range")
        return ast.Range(r.start, r.stop - 1) if r else ast.Range(0, -1)

    @rule
    def index_list(self, c, first, last):
        return list(c)

    @rule
    def task_data(self, c, first, last):
        return ("data", c[0], self._at(first, last))

    @rule
    def task_path(self, c, first, last):
        return ("path", list(c), self._at(first, last))

    @rule
    def task_input(self, c, first, last):
        return ("input", (str(c[0]), self._at(c[0])), self._at(first, last))

    @rule
    def task_stem(self, c, first, last):
        return ("stem", c[0], self._at(first, last))

    @rule
    def task_head(self, c, first, last):
        return ("head", c[0], self._at(first, last))

    @rule
    def task_classes(self, c, first, last):
        return ("classes", ast.Arg("classes", c[0], self._at(first, last)), self._at(first, last))

    @rule
    def task_setting(self, c, first, last):
        key = str(c[0])
        return ("setting", (key, ast.Arg(key, c[1], self._at(first, last))), self._at(first, last))

    @rule
    def task_def(self, c, first, last):
        task = ast.TaskDef(str(c[0]), self._at(first, last))
        for kind, value, loc in c[1:]:
            if kind == "path":
                task.path.extend(value)
                continue
            if kind == "setting":
                key, arg = value
                if key in task.settings:
                    self._duplicate(task.name, key, loc)
                task.settings[key] = arg
                continue
            if getattr(task, kind) is not None:
                self._duplicate(task.name, kind, loc)
            setattr(task, kind, value)
        return task

    def _duplicate(self, task: str, what: str, loc: Location) -> None:
        self.errors.append(SpecSyntaxError(
            f"task '{task}' declares '{what}' twice", loc, f"keep one '{what}' statement per task"))

    # ---- constraints and training ----
    @rule
    def name_list(self, c, first, last):
        return [(str(t), self._at(t)) for t in c]

    @rule
    def level_ref(self, c, first, last):
        return ast.LevelRef(str(c[0]), None, self._at(first, last))

    @rule
    def level_range(self, c, first, last):
        return ast.LevelRef(str(c[0]), str(c[1]), self._at(first, last))

    @rule
    def level_span(self, c, first, last):
        return list(c)

    @rule
    def share_decl(self, c, first, last):
        return ast.Constraint("share", c[0], c[1] if len(c) > 1 else [], self._at(first, last))

    @rule
    def private_decl(self, c, first, last):
        return ast.Constraint("private", c[0], c[1] if len(c) > 1 else [], self._at(first, last))

    @rule
    def setting(self, c, first, last):
        return ast.Setting(str(c[0]), c[1], self._at(first, last))

    @rule
    def train_def(self, c, first, last):
        return ("train", list(c), self._at(first, last))

    @rule
    def network(self, c, first, last):
        net = ast.Network(str(c[0]), self._at(first, last), self.file, self.source)
        for item in c[1:]:
            if isinstance(item, ast.InputDecl):
                net.inputs.append(item)
            elif isinstance(item, ast.SegmentDef):
                net.segments.append(item)
            elif isinstance(item, ast.LevelDef):
                net.levels.append(item)
            elif isinstance(item, ast.TaskDef):
                net.tasks.append(item)
            elif isinstance(item, ast.Constraint):
                net.constraints.append(item)
            elif isinstance(item, tuple) and item[0] == "seed":
                net.seeds.append((item[1], item[2]))
            elif isinstance(item, tuple) and item[0] == "train":
                if net.train_loc is not None:
                    self.errors.append(SpecSyntaxError(
                        "the network has two train blocks", item[2], "merge them into one"))
                net.train.extend(item[1])
                net.train_loc = item[2]
        return net

    @rule
    def start(self, c, first, last):
        return c[0]
