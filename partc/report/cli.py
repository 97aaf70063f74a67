"""`partc report RUN_OR_GROUP -o DIR`: the report stage on the command line.

Problems the report works around (a missing metrics file, a damaged
checkpoint, no test data) are printed as warnings on stderr and listed at
the top of the HTML; the command still succeeds. A missing run directory
or spec.part is a user error (exit 2).
"""

from __future__ import annotations

import argparse
import sys
import time

from partc.argtypes import int_at_least
from partc.devices import DEVICE_CHOICES


def cmd_report(args: argparse.Namespace) -> int:
    import torch

    from partc.devices import cpu_threads
    from partc.report import build_report

    torch.set_num_threads(cpu_threads())  # as `partc train`: the CPUs this process may use
    start = time.perf_counter()
    report = build_report(args.run_dir, args.output, baseline=args.baseline, data_root=args.data_root,
                          probe_size=args.probe_size, device=args.device)
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"wrote {report.html} ({len(report.figures)} figures, report.json) in {time.perf_counter() - start:.1f} s"
          + (f"; {len(report.problems)} problem(s), see above" if report.problems else ""))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="HTML report of a run or seed group: sharing, accuracy, CKA with references, lesion, transfer",
        description="Write report.html (self-contained), report.json and PNG figures for a training run or a seed "
                    "group (partc train --seeds): means and spreads over seeds, comparisons paired by seed.")
    p.add_argument("run_dir", metavar="RUN_OR_GROUP", help="a run directory or seed group written by 'partc train'")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for report.html, report.json, *.png")
    p.add_argument("--baseline", metavar="RUN_OR_GROUP", help="a run or seed group of the same tasks without sharing "
                   "(partc train --no-sharing, best with the same --seeds): transfer, and the baseline CKA reference "
                   "(default: run.json's \"baseline\")")
    p.add_argument("--data-root", metavar="DIR", help="where relative data paths of the spec are found "
                   "(default: as the data stage resolves them)")
    p.add_argument("--probe-size", type=int_at_least(2, " (CKA needs at least 2 samples)"), default=256, metavar="N",
                   help="samples in the common CKA probe batch per input (default 256)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="cpu",
                   help="torch device for the evaluations: cpu (default), cuda, auto (cuda when available)")
    p.set_defaults(func=cmd_report)
