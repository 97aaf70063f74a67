"""argparse value types shared by the commands of several stages (a neutral module: no stage imports the CLI)."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int, why: str = ""):
    """An argparse type: a whole number >= minimum, with a clear message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}{why}, got {value}")
        return value

    return parse
