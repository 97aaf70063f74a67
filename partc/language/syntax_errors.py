"""Language stage, syntax errors: Lark's exceptions -> `SpecSyntaxError`s a user can act on.

Beyond Lark's "unexpected token": a statement keyword starting a line
inside an open block or bracket reports the missing closer and where it was
opened; end of file names the bracket never closed; malformed numbers are
named as such; what the parser expected is said in words.
"""

from __future__ import annotations

import functools
import re

import lark

from partc.errors import SpecSyntaxError, closest
from partc.language.reading import lark_parser, location

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


def syntax_error(e: lark.exceptions.UnexpectedInput, text: str, lines: list[str], file: str) -> SpecSyntaxError:
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
        loc = location(file, lines, line, col, col + len(word))
        if _FLOAT.fullmatch(word):
            return SpecSyntaxError(f"expected an integer, got {word}", loc, "sizes, counts and indices are whole numbers")
        return SpecSyntaxError(f"bad number {word!r}", loc, "numbers look like 3, 0.5, 2e-3 or -1")

    if shown == "}" and not _scan_brackets(text, pos)[0]:
        return SpecSyntaxError("unmatched '}'", location(file, lines, line, column, end),
                               "every '{' before it is already closed; remove this '}'")
    line_end = text.find("\n", pos)
    keyword = _scan_brackets(text, len(text) if line_end < 0 else line_end)[1].get(line)
    if keyword is not None and keyword[0] <= pos:
        start, word, opener, opener_line = keyword
        col = column - (pos - start)
        closer = _CLOSERS[opener]
        what = "that block" if opener == "{" else "it"
        return SpecSyntaxError(f"missing '{closer}' before '{word}'", location(file, lines, line, col, col + len(word)),
                               f"the '{opener}' on line {opener_line} is not closed; add '{closer}' to end {what} first")
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        return SpecSyntaxError(f"unexpected character {shown!r}", location(file, lines, line, column, end), hint)
    misspelt = _misspelt_keyword(e)
    if misspelt is not None:
        token, keyword = misspelt
        end_column = token.column + len(token) if token.end_line == token.line else None
        return SpecSyntaxError(f"unexpected '{token}'", location(file, lines, token.line, token.column, end_column),
                               f"did you mean '{keyword}'?" + (f" {hint}" if token is e.token and hint else ""))
    if len(shown) > 30:
        shown, end = shown[:27] + "...", column + 30
    return SpecSyntaxError(f"unexpected {shown!r}", location(file, lines, line, column, end), hint)


def _end_of_file_error(text: str, lines: list[str], file: str, hint: str | None) -> SpecSyntaxError:
    line = len(lines)
    while line > 1 and not lines[line - 1].strip():
        line -= 1
    loc = location(file, lines, line, len(lines[line - 1].rstrip()) + 1)
    if not text.strip():
        return SpecSyntaxError("the spec is empty", loc, "a spec is one 'network NAME { ... }' block")
    opened, _ = _scan_brackets(text, len(text))
    if opened:
        opener, _, line = opened[-1]
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
_OPENER_OF = {c: o for o, c in _CLOSERS.items()}
# What the bracket scanner looks at: line starts (with the line's first word), comments, strings and
# brackets; everything else is skipped by the regex engine, so a scan is linear and fast.
_SCAN = re.compile(r'(\n[ \t\f\r]*)([A-Za-z_][A-Za-z0-9_]*)?|#[^\n]*|//[^\n]*|"[^"\n]*"|([\[({])|([\])}])')

MAX_NESTING = 32  # brackets open at once: lists in lists, calls in calls (the parser's tree is this deep)


def _scan_brackets(text: str, stop: int) -> tuple[list[tuple[str, int, int]], dict[int, tuple[int, str, str, int]]]:
    """Scan `text[:stop]` (skipping comments and strings) for brackets.

    Returns the brackets still open at `stop` as (char, position, line), and,
    per line, a statement keyword that begins that line while more than the
    network's '{' is open: (position, word, innermost open bracket, its line).
    """
    opened: list[tuple[str, int, int]] = []
    starts: dict[int, tuple[int, str, str, int]] = {}
    line = 1
    for m in _SCAN.finditer(text, 0, stop):
        if m.group(1) is not None:  # a newline, and the word starting the next line
            line += 1
            word = m.group(2)
            if word in _BLOCK_STARTS and len(opened) > 1:
                opener, _, opener_line = opened[-1]
                starts[line] = (m.start(2), word, opener, opener_line)
        elif m.group(3) is not None:
            opened.append((m.group(3), m.start(), line))
        elif m.group(4) is not None:
            opener = _OPENER_OF[m.group(4)]
            for i in range(len(opened) - 1, -1, -1):  # close it, and anything left open inside it
                if opened[i][0] == opener:
                    del opened[i:]
                    break
    return opened, starts


def check_nesting(text: str, lines: list[str], file: str) -> None:
    """Refuse brackets nested deeper than MAX_NESTING before parsing (the AST builder and printer recurse).

    A quick test first, at the regex engine's speed: strip comments and
    strings, keep the brackets, and remove innermost pairs MAX_NESTING
    times; only when a pair is left is the scan run that finds where.
    """
    brackets = re.sub(r'[^\[\](){}]+', "", re.sub(r'#[^\n]*|//[^\n]*|"[^"\n]*"', "", text))
    for _ in range(MAX_NESTING):
        brackets, removed = re.subn(r"\(\)|\[\]|\{\}", "", brackets)
        if not removed:
            return
    if not re.search(r"\(\)|\[\]|\{\}", brackets):
        return
    depth, line = 0, 1
    for m in _SCAN.finditer(text):
        if m.group(1) is not None:
            line += 1
        elif m.group(3) is not None:
            depth += 1
            if depth > MAX_NESTING:
                column = m.start() - text.rfind("\n", 0, m.start())
                raise SpecSyntaxError(f"brackets nest more than {MAX_NESTING} deep here",
                                      location(file, lines, line, column, column + 1),
                                      f"a spec nests lists, calls and blocks at most {MAX_NESTING} deep")
        elif m.group(4) is not None:
            depth = max(0, depth - 1)


_NETWORK_STATEMENTS = {"INPUT", "SEED", "SEGMENT", "LEVEL", "TASK", "SHARE", "PRIVATE", "TRAIN"}
_TASK_STATEMENTS = {"DATA", "PATH", "STEM", "HEAD", "CLASSES", "SETTING_KEY"}
_VALUE_STARTS = {"INT", "FLOAT", "MINUS", "STRING", "LSQB", "NAME", "TRUE", "FALSE"}


def _expected_names(e: lark.exceptions.UnexpectedInput) -> list[str]:
    """What the parser would have accepted here, in words a user knows."""
    expected = _expected_terminals(e)
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


def _expected_terminals(e: lark.exceptions.UnexpectedInput) -> set[str]:
    parser_state = getattr(e, "interactive_parser", None)
    if parser_state is not None:
        return set(parser_state.accepts())
    return set(getattr(e, "expected", None) or getattr(e, "allowed", None) or [])


@functools.cache
def _keywords() -> dict[str, tuple[str, ...]]:
    """The grammar's keywords by terminal: LEVEL -> ('level',), SETTING_KEY -> ('weight', 'sampling')."""
    words = {}
    for t in lark_parser().terminals:
        value = t.pattern.value
        if t.pattern.type == "str" and re.fullmatch(r"[a-z_]+", value):
            words[t.name] = (value,)
        elif t.pattern.type == "re" and re.fullmatch(r"\(\?:[a-z_|]+\)", value):  # "weight" | "sampling"
            words[t.name] = tuple(value[3:-1].split("|"))
    return words


def _misspelt_keyword(e: lark.exceptions.UnexpectedInput) -> tuple[lark.Token, str] | None:
    """(word, keyword) when the word at or just before the error is a misspelling of a keyword.

    `levl l1 = ...` is a name where a statement keyword belongs (the keywords
    valid here are candidates); in `path randm(2)` or `weigth 2` the parser took
    the word for a level name and stumbles on what follows it (any keyword is).
    """
    if not isinstance(e, lark.exceptions.UnexpectedToken):
        return None
    here = [word for terminal in sorted(_expected_terminals(e)) for word in _keywords().get(terminal, ())]
    candidates = [(e.token, here)]
    stack = getattr(getattr(e.interactive_parser, "parser_state", None), "value_stack", None) or []
    if stack and isinstance(stack[-1], lark.Token):
        candidates.append((stack[-1], sorted({w for words in _keywords().values() for w in words})))
    for token, keywords in candidates:
        if isinstance(token, lark.Token) and token.type == "NAME" and token.line is not None:
            keyword = closest(str(token), keywords)
            if keyword is not None and keyword != str(token):
                return token, keyword
    return None


def _token_name(terminal: str) -> str:
    """`RBRACE` -> "'}'", `PLUS` -> "'+'", `INT` -> "an integer": the grammar's literal where it has one."""
    if terminal in _TOKEN_NAMES:
        return _TOKEN_NAMES[terminal]
    literals = {t.name: t.pattern.value for t in lark_parser().terminals if t.pattern.type == "str"}
    return f"'{literals[terminal]}'" if terminal in literals else terminal.lower()


def _join_or(items: list[str]) -> str:
    if len(items) > 8:
        items = items[:8] + ["..."]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


