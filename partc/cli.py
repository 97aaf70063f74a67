"""The `partc` command: a thin layer over the pipeline's entry points.

Every user error is a `PartError`: printed, exit code 2, no traceback; so
is an `OSError` (a full disk, a read-only or missing output folder) that a
stage let through, named by its path. Anything else escaping a command is
a bug in partc and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from partc.errors import EXIT_USER_ERROR, PartError
from partc.version import __version__

MAX_WARNINGS_SHOWN = 20


def cmd_check(args: argparse.Namespace) -> int:
    import partc
    from partc.errors import raise_collected
    from partc.ir_text import dump
    from partc.summary import summary

    if args.base is not None:
        from partc.train.extend import describe_extension, plan_extension

        extension = plan_extension(args.base, args.spec)
        net = extension.net
        sys.stdout.write(dump(net) if args.dump else summary(net) + "\n" + describe_extension(extension))
        return 0
    net = partc.load(args.spec)
    if net.warnings and args.strict:
        raise_collected([w.as_error() for w in net.warnings], limit=MAX_WARNINGS_SHOWN)
    for warning in net.warnings[:MAX_WARNINGS_SHOWN]:
        print(warning.render(), file=sys.stderr)
    if len(net.warnings) > MAX_WARNINGS_SHOWN:
        print(f"... and {len(net.warnings) - MAX_WARNINGS_SHOWN} more warnings", file=sys.stderr)
    sys.stdout.write(dump(net) if args.dump else summary(net))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    import partc
    from partc.dot import write_graph

    net = partc.load(args.spec)
    out = write_graph(net, args.output)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partc", description="Compile, train, export and serve PaRT multi-task networks from .part specs."
    )
    parser.add_argument("--version", action="version", version=f"partc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check", help="check a spec and print its levels, paths and parameter counts")
    p.add_argument("spec", help="the .part file")
    p.add_argument("--dump", action="store_true", help="print the IR graph, a line per node and edge")
    p.add_argument("--base", metavar="BASE_RUN", help="check a grown spec against a trained run: the routes and "
                   "frozen segments 'partc extend' would use")
    p.add_argument("--strict", action="store_true",
                   help="treat warnings (unused segments, inputs or templates, identical routes, ...) as errors")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("graph", help="draw the network with each task's path (DOT, or SVG/PNG via Graphviz)")
    p.add_argument("spec", help="the .part file")
    p.add_argument("-o", "--output", required=True, help="net.dot, net.svg or net.png")
    p.set_defaults(func=cmd_graph)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Commands of later stages register themselves here (compile, train, ...)."""
    from partc.codegen.cli import register as register_compile
    from partc.export.cli import register as register_export
    from partc.fmt import register as register_fmt
    from partc.report.cli import register as register_report
    from partc.serve.cli import register as register_serve
    from partc.train.cli import register as register_train

    return [register_fmt, register_compile, register_train, register_export, register_serve, register_report]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return args.func(args)
    except PartError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # a file system refusing an output the stage did not name itself: still the user's to fix
        from partc.run import fs_error

        print(fs_error("write or read", e.filename, e).render(), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
