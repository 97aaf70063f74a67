"""Language stage, AST building: Lark's parse tree -> `ast.Network`, collecting structural errors.

Numbers keep how they were written (`ast.Float`), explicit path indices
keep their ranges, and every node gets its `Location`, so the printer can
write the spec back and errors can point at it.
"""

from __future__ import annotations

from lark import Token, Transformer, v_args

from partc.errors import Location, PartError, SpecSyntaxError
from partc.language import ast
from partc.language.reading import location

MAX_DIGITS = 15  # longest integer literal
MAX_RANGE = 100_000  # longest `lo..hi` (class lists, segment indices)


@v_args(meta=True)
class AstBuilder(Transformer):
    """Builds AST dataclasses bottom-up; collects structural errors."""

    def __init__(self, file: str, lines: list[str], source: str):
        super().__init__()
        self.file, self.lines, self.source = file, lines, source
        self.errors: list[PartError] = []

    def _at(self, meta_or_token) -> Location:
        if isinstance(meta_or_token, Token):
            return location(self.file, self.lines, meta_or_token.line, meta_or_token.column,
                        meta_or_token.end_column if meta_or_token.end_line == meta_or_token.line else None)
        m = meta_or_token
        if getattr(m, "empty", False):
            return location(self.file, self.lines, 1, 1)
        end = m.end_column if m.end_line == m.line else None
        return location(self.file, self.lines, m.line, m.column, end)

    def _int(self, token: Token) -> int:
        # Python refuses int() on strings of thousands of digits; nothing in a
        # spec needs more than a handful.
        if len(token) > MAX_DIGITS:
            self.errors.append(SpecSyntaxError(f"number {token[:12]}... is too large", self._at(token),
                                               f"use at most {MAX_DIGITS} digits"))
            return 0
        return int(token)

    def _range(self, meta, lo: int, hi: int, what: str) -> range:
        if hi < lo:
            self.errors.append(SpecSyntaxError(f"empty {what} {lo}..{hi}", self._at(meta), f"write {hi}..{lo}"))
        elif hi - lo >= MAX_RANGE:
            self.errors.append(SpecSyntaxError(f"{what} {lo}..{hi} is too long", self._at(meta),
                                               f"a range spans at most {MAX_RANGE:,} values"))
            return range(0)
        return range(lo, hi + 1)

    # ---- values ----
    def int(self, meta, c):
        return self._int(c[0])

    def float(self, meta, c):
        return ast.Float(str(c[0]))

    def neg_int(self, meta, c):
        return -self._int(c[0])

    def neg_float(self, meta, c):
        return -ast.Float(str(c[0]))

    def string(self, meta, c):
        return str(c[0])[1:-1]

    def list(self, meta, c):
        return list(c)

    def range(self, meta, c):
        r = self._range(meta, self._int(c[0]), self._int(c[1]), "range")
        return ast.Range(r.start, r.stop - 1) if r else ast.Range(0, -1)

    def true(self, meta, c):
        return True

    def false(self, meta, c):
        return False

    def name(self, meta, c):
        return ast.Ref(str(c[0]), self._at(c[0]))

    def call_value(self, meta, c):
        return ast.Call(str(c[0]), c[1], self._at(meta))

    def positional_arg(self, meta, c):
        return ast.Arg(None, c[0], self._at(meta))

    def keyword_arg(self, meta, c):
        return ast.Arg(str(c[0]), c[1], self._at(meta))

    def arg_list(self, meta, c):
        seen = set()
        for arg in c:
            if arg.name is not None and arg.name in seen:
                self.errors.append(SpecSyntaxError(f"argument '{arg.name}' is given twice", arg.loc,
                                                   f"keep one '{arg.name}=...'"))
            seen.add(arg.name)
        return list(c)

    def call(self, meta, c):
        return ast.Call(str(c[0]), c[1] if len(c) > 1 else [], self._at(meta))

    layer = call

    def layer_block(self, meta, c):
        return list(c)

    def int_list(self, meta, c):
        return tuple(self._int(t) for t in c)

    def param_list(self, meta, c):
        return [str(t) for t in c]

    # ---- declarations ----
    def input_decl(self, meta, c):
        return ast.InputDecl(str(c[0]), str(c[1]), c[2], self._at(meta))

    def seed_decl(self, meta, c):
        return ("seed", self._int(c[0]), self._at(meta))

    def segment_def(self, meta, c):
        params = c[1] if len(c) == 3 else []
        return ast.SegmentDef(str(c[0]), params, c[-1], self._at(meta))

    def residual(self, meta, c):
        return "residual"

    def then_ops(self, meta, c):
        return ("then", list(c))

    def segment_group(self, meta, c):
        return ast.SegmentGroup(self._int(c[0]), c[1], self._at(meta))

    def level_def(self, meta, c):
        groups = [x for x in c[1:] if isinstance(x, ast.SegmentGroup)]
        residual = "residual" in c[1:]
        then = next((x[1] for x in c[1:] if isinstance(x, tuple)), [])
        return ast.LevelDef(str(c[0]), groups, residual, then, self._at(meta))

    # ---- tasks ----
    def path_random(self, meta, c):
        return ast.PathItem("random", None, self._int(c[0]), None, self._at(meta))

    def path_level_random(self, meta, c):
        return ast.PathItem("level_random", str(c[0]), self._int(c[1]), None, self._at(meta))

    def path_explicit(self, meta, c):
        return ast.PathItem("explicit", str(c[0]), None, c[1], self._at(meta))

    def index_item(self, meta, c):
        return self._int(c[0])

    def index_range(self, meta, c):
        r = self._range(meta, self._int(c[0]), self._int(c[1]), "index range")
        return ast.Range(r.start, r.stop - 1) if r else ast.Range(0, -1)

    def index_list(self, meta, c):
        return list(c)

    def task_data(self, meta, c):
        return ("data", c[0], self._at(meta))

    def task_path(self, meta, c):
        return ("path", list(c), self._at(meta))

    def task_input(self, meta, c):
        return ("input", (str(c[0]), self._at(c[0])), self._at(meta))

    def task_stem(self, meta, c):
        return ("stem", c[0], self._at(meta))

    def task_head(self, meta, c):
        return ("head", c[0], self._at(meta))

    def task_classes(self, meta, c):
        return ("classes", ast.Arg("classes", c[0], self._at(meta)), self._at(meta))

    def task_setting(self, meta, c):
        key = str(c[0])
        return ("setting", (key, ast.Arg(key, c[1], self._at(meta))), self._at(meta))

    def task_def(self, meta, c):
        task = ast.TaskDef(str(c[0]), self._at(meta))
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
    def name_list(self, meta, c):
        return [(str(t), self._at(t)) for t in c]

    def level_ref(self, meta, c):
        return ast.LevelRef(str(c[0]), None, self._at(meta))

    def level_range(self, meta, c):
        return ast.LevelRef(str(c[0]), str(c[1]), self._at(meta))

    def level_span(self, meta, c):
        return list(c)

    def share_decl(self, meta, c):
        return ast.Constraint("share", c[0], c[1] if len(c) > 1 else [], self._at(meta))

    def private_decl(self, meta, c):
        return ast.Constraint("private", c[0], c[1] if len(c) > 1 else [], self._at(meta))

    def setting(self, meta, c):
        return ast.Setting(str(c[0]), c[1], self._at(meta))

    def train_def(self, meta, c):
        return ("train", list(c), self._at(meta))

    def network(self, meta, c):
        net = ast.Network(str(c[0]), self._at(meta), self.file, self.source)
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

    def start(self, meta, c):
        return c[0]
