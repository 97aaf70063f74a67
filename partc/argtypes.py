"""argparse value types shared by the commands of several stages (a neutral module: no stage imports the CLI)."""

from __future__ import annotations

import argparse
import math


def int_at_least(minimum: int, why: str = "", *, maximum: int | None = None):
    """An argparse type: a whole number >= minimum (and <= maximum, when given), with a clear message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}{why}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum}{why}, got {value}")
        return value

    return parse


def number_between(minimum: float, maximum: float, why: str = ""):
    """An argparse type: a finite number in [minimum, maximum]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected a number from {minimum:g} to {maximum:g}{why}, got {text}")
        return value

    return parse
