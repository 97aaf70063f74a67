"""Stage 1: spec text -> AST (`parse`), with Lark's LALR parser.

Lark's exceptions are turned into `SpecSyntaxError`s here, at the parser
boundary, so no later stage ever sees a Lark type.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, v_args

from partc.errors import Location, PartError, SpecFileError, SpecSyntaxError, raise_collected
from partc.language import ast

# Readable names for the grammar's terminals, used in "expected ..." hints.
_TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": 'a "string"',
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "SEMICOLON": "';'",
    "COLON": "':'",
    "EQUAL": "'='",
    "MINUS": "'-'",
    "SETTING_KEY": "'weight' or 'sampling'",
    "$END": "end of file",
}


def grammar_path() -> Path:
    """The grammar ships inside the package (wheel) or beside it (checkout)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "grammar" / "part.lark", here.parent / "grammar" / "part.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("grammar/part.lark is missing from the partc installation")


@functools.lru_cache(maxsize=1)
def _lark_parser() -> Lark:
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def read_spec(path: str | Path) -> str:
    """Read a spec file, turning I/O and encoding problems into user errors."""
    p = Path(path)
    if not p.exists():
        raise SpecFileError(f"spec file '{path}' does not exist", hint="check the path; specs end in .part")
    if p.is_dir():
        raise SpecFileError(f"'{path}' is a directory, not a spec file")
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise SpecFileError(
            f"spec file '{path}' is not valid UTF-8 (byte 0x{p.read_bytes()[e.start]:02x} on line {line})",
            hint="save the file as UTF-8",
        ) from None
    except OSError as e:
        raise SpecFileError(f"cannot read spec file '{path}': {e.strerror}") from None


def parse(text: str, file: str = "<spec>") -> ast.Network:
    """Parse spec text into an `ast.Network`; raise `SpecSyntaxError` on bad input."""
    lines = text.splitlines()
    try:
        tree = _lark_parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        raise _syntax_error(e, text, lines, file) from None
    builder = _AstBuilder(file, lines, text)
    network = builder.transform(tree)
    raise_collected(builder.errors)
    return network


def _loc(file: str, lines: list[str], line: int, column: int, end_column: int | None = None) -> Location:
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    return Location(file, line, column, end_column, source_line)


def _syntax_error(e: lark.exceptions.UnexpectedInput, text: str, lines: list[str], file: str) -> SpecSyntaxError:
    line, column = getattr(e, "line", -1), getattr(e, "column", -1)
    if isinstance(e, lark.exceptions.UnexpectedEOF) or line in (-1, None):
        line = max(len(lines), 1)
        column = len(lines[-1]) + 1 if lines else 1
    loc = _loc(file, lines, line, column)
    names = _expected_names(e)
    hint = f"expected {_join_or(names)}" if names else None
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        char = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        return SpecSyntaxError(f"unexpected character {char!r}", loc, hint)
    if isinstance(e, lark.exceptions.UnexpectedEOF) or (
        isinstance(e, lark.exceptions.UnexpectedToken) and e.token.type == "$END"
    ):
        return SpecSyntaxError("unexpected end of file", loc, hint or "a '}' may be missing")
    token = e.token
    shown = str(token) if len(str(token)) <= 30 else str(token)[:27] + "..."
    end = column + len(str(token)) if str(token) else None
    return SpecSyntaxError(f"unexpected {shown!r}", _loc(file, lines, line, column, end), hint)


_NETWORK_STATEMENTS = {"INPUT", "SEED", "SEGMENT", "LEVEL", "TASK", "SHARE", "PRIVATE", "TRAIN"}
_TASK_STATEMENTS = {"DATA", "PATH", "STEM", "HEAD", "CLASSES", "SETTING_KEY"}


def _expected_names(e: lark.exceptions.UnexpectedInput) -> list[str]:
    """What the parser would have accepted here, in words a user knows."""
    parser_state = getattr(e, "interactive_parser", None)
    if parser_state is not None:
        expected = set(parser_state.accepts())
    else:
        expected = set(getattr(e, "expected", None) or getattr(e, "allowed", None) or [])
    names = []
    if _NETWORK_STATEMENTS <= expected:
        expected -= _NETWORK_STATEMENTS
        names.append("a statement (input, seed, segment, level, task, share, private, train)")
    if _TASK_STATEMENTS <= expected:
        expected -= _TASK_STATEMENTS | {"INPUT"}
        names.append("a task statement (data, path, input, stem, head, classes, weight, sampling)")
    names += sorted(_TOKEN_NAMES.get(t, f"'{t.lower()}'" if t.isupper() else t) for t in expected)
    return names


def _join_or(items: list[str]) -> str:
    if len(items) > 8:
        items = items[:8] + ["..."]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


# Lark's LALR rule names for the trailing part of the network/task bodies.
@v_args(meta=True)
class _AstBuilder(Transformer):
    """Builds AST dataclasses bottom-up; collects structural errors."""

    def __init__(self, file: str, lines: list[str], source: str):
        super().__init__()
        self.file, self.lines, self.source = file, lines, source
        self.errors: list[PartError] = []

    def _at(self, meta_or_token) -> Location:
        if isinstance(meta_or_token, Token):
            return _loc(self.file, self.lines, meta_or_token.line, meta_or_token.column,
                        meta_or_token.end_column if meta_or_token.end_line == meta_or_token.line else None)
        m = meta_or_token
        if getattr(m, "empty", False):
            return _loc(self.file, self.lines, 1, 1)
        end = m.end_column if m.end_line == m.line else None
        return _loc(self.file, self.lines, m.line, m.column, end)

    # ---- values ----
    def int(self, meta, c):
        return int(c[0])

    def float(self, meta, c):
        return float(c[0])

    def neg_int(self, meta, c):
        return -int(c[0])

    def neg_float(self, meta, c):
        return -float(c[0])

    def string(self, meta, c):
        return str(c[0])[1:-1]

    def list(self, meta, c):
        return list(c)

    def range(self, meta, c):
        return ast.Range(int(c[0]), int(c[1]))

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
        return list(c)

    def call(self, meta, c):
        return ast.Call(str(c[0]), c[1] if len(c) > 1 else [], self._at(meta))

    layer = call

    def layer_block(self, meta, c):
        return list(c)

    def int_list(self, meta, c):
        return tuple(int(t) for t in c)

    def param_list(self, meta, c):
        return [str(t) for t in c]

    # ---- declarations ----
    def input_decl(self, meta, c):
        return ast.InputDecl(str(c[0]), str(c[1]), c[2], self._at(meta))

    def seed_decl(self, meta, c):
        return ("seed", int(c[0]), self._at(meta))

    def segment_def(self, meta, c):
        params = c[1] if len(c) == 3 else []
        return ast.SegmentDef(str(c[0]), params, c[-1], self._at(meta))

    def residual(self, meta, c):
        return "residual"

    def then_ops(self, meta, c):
        return ("then", list(c))

    def segment_group(self, meta, c):
        return ast.SegmentGroup(int(c[0]), c[1], self._at(meta))

    def level_def(self, meta, c):
        groups = [x for x in c[1:] if isinstance(x, ast.SegmentGroup)]
        residual = "residual" in c[1:]
        then = next((x[1] for x in c[1:] if isinstance(x, tuple)), [])
        return ast.LevelDef(str(c[0]), groups, residual, then, self._at(meta))

    # ---- tasks ----
    def path_random(self, meta, c):
        return ast.PathItem("random", None, int(c[0]), None, self._at(meta))

    def path_level_random(self, meta, c):
        return ast.PathItem("level_random", str(c[0]), int(c[1]), None, self._at(meta))

    def path_explicit(self, meta, c):
        return ast.PathItem("explicit", str(c[0]), None, c[1], self._at(meta))

    def index_item(self, meta, c):
        return [int(c[0])]

    def index_range(self, meta, c):
        lo, hi = int(c[0]), int(c[1])
        if hi < lo:
            self.errors.append(SpecSyntaxError(
                f"empty index range {lo}..{hi}", self._at(meta), f"write {hi}..{lo}"))
        return list(range(lo, hi + 1))

    def index_list(self, meta, c):
        return [i for part in c for i in part]

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
