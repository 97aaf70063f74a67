"""Stage 1: spec text -> AST (`parse`), with Lark's LALR parser.

Lark's exceptions are turned into `SpecSyntaxError`s here, at the parser
boundary, so no later stage ever sees a Lark type.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
import sys
import tempfile
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, v_args

from partc.errors import Location, PartError, SpecFileError, SpecSyntaxError, raise_collected
from partc.language import ast

MAX_DIGITS = 15  # longest integer literal
MAX_RANGE = 100_000  # longest `lo..hi` (class lists, segment indices)

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
    """The LALR parser, loaded from a per-user cache when the grammar is unchanged.

    Building the LALR tables costs about 0.3 s, a large share of a `partc
    check`; loading them from the cache about 0.03 s.
    """
    grammar = grammar_path().read_text(encoding="utf-8")
    key = hashlib.sha256(f"{grammar}\n{lark.__version__}\n{sys.version_info[:2]}".encode()).hexdigest()[:16]
    folder = _private_cache_dir()
    cache = folder / f"part-grammar-{key}.lark" if folder else None
    if cache is not None and cache.is_file():
        try:
            with cache.open("rb") as f:
                return Lark.load(f)
        except Exception:  # a damaged or foreign cache is rebuilt, never fatal
            pass
    parser = Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)
    if cache is not None:
        try:
            partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            with partial.open("wb") as f:
                parser.save(f)
            os.replace(partial, cache)  # atomic: concurrent runs never read half a file
        except OSError:
            pass
    return parser


def _private_cache_dir() -> Path | None:
    """A folder only this user can write, in the temp dir; None where one cannot be had safely.

    The cache is a pickle, so it must not live where another user could plant one.
    """
    if not hasattr(os, "getuid"):  # Windows: no cheap ownership check, so no cache
        return None
    folder = Path(tempfile.gettempdir()) / f"partc-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def read_spec(path: str | Path) -> str:
    """Read a spec file, turning I/O and encoding problems into user errors."""
    p = Path(path)
    if not p.exists():
        raise SpecFileError(f"spec file '{path}' does not exist", hint="check the path; specs end in .part")
    if p.is_dir():
        raise SpecFileError(f"'{path}' is a directory, not a spec file", hint="name a .part file inside it")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SpecFileError(f"cannot read spec file '{path}': {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")  # tolerate the byte-order mark some editors write
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line_end = data.find(b"\n", e.start)
        source_line = data[line_start : len(data) if line_end < 0 else line_end].decode("utf-8", errors="replace")
        column = len(data[line_start : e.start].decode("utf-8", errors="replace")) + 1
        loc = Location(str(path), data.count(b"\n", 0, e.start) + 1, column, None, source_line)
        raise SpecFileError(f"spec file is not valid UTF-8 (byte 0x{data[e.start]:02x})", loc,
                            "save the file as UTF-8") from None


def parse(text: str, file: str = "<spec>") -> ast.Network:
    """Parse spec text into an `ast.Network`; raise `SpecSyntaxError` on bad input."""
    # Lark counts lines by "\n" only; str.splitlines() would also split on
    # \f, \v, \u2028 ..., and the caret would then show the wrong line.
    lines = text.split("\n")
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
    names = _expected_names(e)
    hint = f"expected {_join_or(names)}" if names else None
    at_end = isinstance(e, lark.exceptions.UnexpectedEOF) or (
        isinstance(e, lark.exceptions.UnexpectedToken) and e.token.type == "$END"
    )
    if at_end or getattr(e, "line", -1) in (-1, None):
        return _end_of_file_error(text, lines, file, hint)
    line, column, pos = e.line, e.column, e.pos_in_stream
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        shown, end = text[pos] if pos < len(text) else "?", column + 1
    else:
        shown, end = str(e.token), column + len(str(e.token))

    number = _bad_number(text, pos)
    if number is not None:
        start, word = number
        col = column - (pos - start)
        loc = _loc(file, lines, line, col, col + len(word))
        if _FLOAT.fullmatch(word):
            return SpecSyntaxError(f"expected an integer, got {word}", loc, "sizes, counts and indices are whole numbers")
        return SpecSyntaxError(f"bad number {word!r}", loc, "numbers look like 3, 0.5, 2e-3 or -1")

    if shown == "}" and not _scan_brackets(text, pos)[0]:
        return SpecSyntaxError("unmatched '}'", _loc(file, lines, line, column, end),
                               "every '{' before it is already closed; remove this '}'")
    line_end = text.find("\n", pos)
    keyword = _scan_brackets(text, len(text) if line_end < 0 else line_end)[1].get(line)
    if keyword is not None and keyword[0] <= pos:
        start, word, opener, opener_line = keyword
        col = column - (pos - start)
        closer = _CLOSERS[opener]
        what = "that block" if opener == "{" else "it"
        return SpecSyntaxError(f"missing '{closer}' before '{word}'", _loc(file, lines, line, col, col + len(word)),
                               f"the '{opener}' on line {opener_line} is not closed; add '{closer}' to end {what} first")
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        return SpecSyntaxError(f"unexpected character {shown!r}", _loc(file, lines, line, column, end), hint)
    if len(shown) > 30:
        shown, end = shown[:27] + "...", column + 30
    return SpecSyntaxError(f"unexpected {shown!r}", _loc(file, lines, line, column, end), hint)


def _end_of_file_error(text: str, lines: list[str], file: str, hint: str | None) -> SpecSyntaxError:
    line = len(lines)
    while line > 1 and not lines[line - 1].strip():
        line -= 1
    loc = _loc(file, lines, line, len(lines[line - 1].rstrip()) + 1)
    if not text.strip():
        return SpecSyntaxError("the spec is empty", loc, "a spec is one 'network NAME { ... }' block")
    opened, _ = _scan_brackets(text, len(text))
    if opened:
        opener, at = opened[-1]
        line = text.count("\n", 0, at) + 1
        return SpecSyntaxError(f"unexpected end of file: the '{opener}' on line {line} is never closed", loc,
                               f"add '{_CLOSERS[opener]}' to close it")
    return SpecSyntaxError("unexpected end of file", loc, hint)


_FLOAT = re.compile(r"[0-9]+\.[0-9]+([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+")
_WORD_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.")


def _bad_number(text: str, pos: int) -> tuple[int, str] | None:
    """The malformed number the error position sits in (`0.5.1`, `8x`, `1e`), if any."""
    if pos >= len(text) or text[pos] not in _WORD_CHARS:
        return None  # the offending character is not part of a word: `7$` is a stray '$'
    start = pos
    while start > 0 and text[start - 1] in _WORD_CHARS:
        start -= 1
    if start == pos or not text[start].isdigit():
        return None
    end = pos
    while end < len(text) and (text[end] in _WORD_CHARS or (text[end] in "+-" and text[end - 1] in "eE")):
        end += 1
    return start, text[start:end]


# Statements that only appear directly inside `network { ... }`: seen at the
# start of a line while a nested block or bracket is open, they mean that
# block or bracket lacks its closer.
_BLOCK_STARTS = {"segment", "level", "task", "share", "private", "train"}
_CLOSERS = {"{": "}", "(": ")", "[": "]"}


def _scan_brackets(text: str, stop: int) -> tuple[list[tuple[str, int]], dict[int, tuple[int, str, str, int]]]:
    """Scan `text[:stop]` (skipping comments and strings) for brackets.

    Returns the brackets still open at `stop` as (char, position), and, per
    line, a statement keyword that begins that line while more than the
    network's '{' is open: (position, word, innermost open bracket, its line).
    """
    opened: list[tuple[str, int]] = []
    starts: dict[int, tuple[int, str, str, int]] = {}
    line, first_on_line, i = 1, True, 0
    while i < stop:
        ch = text[i]
        if ch == "\n":
            line, first_on_line = line + 1, True
            i += 1
            continue
        if ch == "#" or text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        if ch == '"':
            close = text.find('"', i + 1)
            i = close + 1 if close >= 0 and "\n" not in text[i:close] else i + 1
            first_on_line = False
            continue
        if ch in _CLOSERS:
            opened.append((ch, i))
        elif ch in "})]":
            openers = [o for o, _ in opened]
            opener = next(o for o, c in _CLOSERS.items() if c == ch)
            if opener in openers:  # close it, and anything left open inside it
                del opened[len(openers) - 1 - openers[::-1].index(opener):]
        elif ch.isalpha() and first_on_line and len(opened) > 1:
            end = i
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            if text[i:end] in _BLOCK_STARTS:
                opener, at = opened[-1]
                starts[line] = (i, text[i:end], opener, text.count("\n", 0, at) + 1)
        if not ch.isspace():
            first_on_line = False
        i += 1
    return opened, starts


_NETWORK_STATEMENTS = {"INPUT", "SEED", "SEGMENT", "LEVEL", "TASK", "SHARE", "PRIVATE", "TRAIN"}
_TASK_STATEMENTS = {"DATA", "PATH", "STEM", "HEAD", "CLASSES", "SETTING_KEY"}
_VALUE_STARTS = {"INT", "FLOAT", "MINUS", "STRING", "LSQB", "NAME", "TRUE", "FALSE"}


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
    if _VALUE_STARTS <= expected:
        expected -= _VALUE_STARTS
        names.append("a value (number, \"string\", [list], name or true/false)")
    names += sorted(_token_name(t) for t in expected)
    return names


def _token_name(terminal: str) -> str:
    """`RBRACE` -> "'}'", `PLUS` -> "'+'", `INT` -> "an integer": the grammar's literal where it has one."""
    if terminal in _TOKEN_NAMES:
        return _TOKEN_NAMES[terminal]
    literals = {t.name: t.pattern.value for t in _lark_parser().terminals if t.pattern.type == "str"}
    return f"'{literals[terminal]}'" if terminal in literals else terminal.lower()


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
        return float(c[0])

    def neg_int(self, meta, c):
        return -self._int(c[0])

    def neg_float(self, meta, c):
        return -float(c[0])

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
        return [self._int(c[0])]

    def index_range(self, meta, c):
        return list(self._range(meta, self._int(c[0]), self._int(c[1]), "index range"))

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
