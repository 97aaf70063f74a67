"""`partc compile`: write the generated source of a spec (a thin layer over `generate`)."""

from __future__ import annotations

import argparse


def cmd_compile(args: argparse.Namespace) -> int:
    from partc.codegen import generate
    from partc.spec import load

    net = load(args.spec)
    for path in generate(net, args.output):
        print(path)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compile", help="write readable PyTorch source, DOT graph and summary to DIR/<network>/",
        description="Write DIR/<network>/model.py (standalone PyTorch, loads partc checkpoints), "
        "graph.dot and summary.md; prints the paths written.")
    p.add_argument("spec", help="the .part file")
    p.add_argument("-o", "--output", default="generated", metavar="DIR",
                   help="folder to write <network>/ into (default: generated, in the current directory)")
    p.set_defaults(func=cmd_compile)
