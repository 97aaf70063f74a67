"""`partc export`: the command-line face of the export stage (imports torch only when run)."""

from __future__ import annotations

import argparse

from partc.export import NATIVE_OPSET
from partc.export.triton import LAYOUTS


def cmd_export(args: argparse.Namespace) -> int:
    from partc.export.pipeline import export_fused, export_tasks

    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.fused:
        export_fused(args.source, args.output, tasks=args.task or None, opset=args.opset, layout=args.layout,
                     max_batch=args.max_batch, dynamic_batching=args.dynamic_batching, log=log)
        return 0
    export_tasks(args.source, args.output, tasks=args.task or None, opset=args.opset, layout=args.layout,
                 max_batch=args.max_batch, normalize_in_graph=args.normalize_in_graph,
                 dynamic_batching=args.dynamic_batching, log=log)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export each task as its own verified ONNX model (or all tasks as one, --fused)",
        description="Write one .onnx per task holding only that task's stem, path segments and head, "
                    "with metadata (labels, normalisation, input) and checked against torch in ONNX Runtime. "
                    "With --fused, one <network>.onnx returning every task's logits in one pass.",
    )
    p.add_argument("source", metavar="RUN_DIR_OR_CHECKPOINT_OR_SPEC",
                   help="a 'partc train' run directory (its last.pt), a checkpoint file in one, or a .part spec "
                        "(untrained weights, for smoke tests)")
    p.add_argument("--task", action="append", metavar="T", help="export this task (repeatable; default: every task)")
    p.add_argument("--fused", action="store_true",
                   help="one file DIR/<network>.onnx for the tasks (all of one input): one output per task, named "
                        "after it; each segment runs once for the tasks routed through it; normalises in its graph")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--opset", type=int, default=NATIVE_OPSET, metavar="N",
                   help=f"ONNX opset, 17 or newer (default {NATIVE_OPSET})")
    p.add_argument("--layout", choices=LAYOUTS, default="plain",
                   help="plain: DIR/<task>.onnx; triton: DIR/<task>/1/model.onnx + config.pbtxt + labels.txt")
    p.add_argument("--max-batch", type=int, default=64, metavar="N",
                   help="largest batch: Triton's max_batch_size, and the limit partc serve enforces (default 64)")
    p.add_argument("--normalize-in-graph", action="store_true",
                   help="fold (x - mean) / std into each graph: the files take raw input in [0, 1] (for Triton clients; "
                        "a --fused file always does)")
    p.add_argument("--dynamic-batching", action="store_true",
                   help="with --layout triton: write 'dynamic_batching { }' so that Triton batches requests")
    p.set_defaults(func=cmd_export)
