"""Lazy package attributes: the one way partc defers heavy imports (torch, onnx, matplotlib) to first use.

The CLI imports every stage's package to register its command, and
`partc check` must not pay for torch; a package lists its public names and
the modules that define them, and they load when first used:

    _LAZY = {"train": "partc.train.runner"}
    __getattr__ = lazy_attributes(__name__, _LAZY)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    return __getattr__
