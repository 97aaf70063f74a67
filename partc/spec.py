"""The front of the pipeline in one call: spec file or text -> checked network (read, parse, check).

Every stage that starts from a spec (codegen, train, export, the run
directory) calls these instead of the package face, so dependencies point
one way; `partc.load` and `partc.loads` are these same functions.
"""

from __future__ import annotations

from pathlib import Path

from partc.ir import Network
from partc.language import parse, read_spec
from partc.passes import check


def loads(text: str, file: str = "<spec>") -> Network:
    """Parse and check spec text."""
    return check(parse(text, file))


def load(path: str | Path) -> Network:
    """Read, parse and check a spec file: the checked network (IR)."""
    return loads(read_spec(path), str(path))
