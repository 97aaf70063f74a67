"""The parser's LALR tables are cached per user; a bad cache is never fatal."""

from __future__ import annotations

import os
import sys

import pytest

from partc.language import parse
from partc.language import reading as parser_module

pytestmark = pytest.mark.skipif(not hasattr(os, "getuid"), reason="the cache is only kept where ownership can be checked")


@pytest.fixture
def fresh_parser(tmp_path, monkeypatch):
    """Point the cache at an empty temp dir and forget the parser built so far."""
    monkeypatch.setattr(parser_module.tempfile, "gettempdir", lambda: str(tmp_path))
    parser_module.lark_parser.cache_clear()
    yield tmp_path / f"partc-{os.getuid()}"
    parser_module.lark_parser.cache_clear()


SPEC = "network n { input x: float[1, 8, 8] level l = 2 x conv(4) task a { data digits path random(1) } }"


def test_cache_is_written_then_used(fresh_parser):
    parse(SPEC)
    (cache,) = fresh_parser.glob("part-grammar-*.lark")
    assert oct(fresh_parser.stat().st_mode & 0o777) == "0o700"
    parser_module.lark_parser.cache_clear()
    tree = parse(SPEC)  # from the cache: positions still come with the tree
    assert tree.tasks[0].loc.line == 1 and tree.tasks[0].loc.column == 59


def test_damaged_cache_is_rebuilt(fresh_parser):
    parse(SPEC)
    (cache,) = fresh_parser.glob("part-grammar-*.lark")
    cache.write_bytes(b"not a pickle")
    parser_module.lark_parser.cache_clear()
    assert parse(SPEC).name == "n"
    assert cache.read_bytes() != b"not a pickle"  # and written again


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_folder_others_can_write_is_not_used(fresh_parser):
    fresh_parser.mkdir(mode=0o777)
    os.chmod(fresh_parser, 0o777)
    assert parser_module._private_cache_dir() is None
    assert parse(SPEC).name == "n"
    assert list(fresh_parser.iterdir()) == []
