"""`partc train` and `partc extend`: the commands over `partc.train.train` and `partc.train.extend.extend`."""

from __future__ import annotations

import argparse
import contextlib
import sys

from partc.argtypes import int_at_least
from partc.devices import DEVICE_CHOICES
from partc.errors import EXIT_USER_ERROR


def prepare_torch(threads: int | None, net) -> None:
    """CPU threads and the OpenMP wait policy for a training process, before torch is first imported
    (`partc.devices.configure_cpu`): --threads when given, else partc's default for `net` (a resumed
    run then takes its own count, `partc.train.runner`); `net` None: a spec with errors, which the
    command reports when it loads it."""
    from partc.devices import configure_cpu
    from partc.train.flops import spec_layer_bytes

    configure_cpu(threads, layer_bytes=spec_layer_bytes(net) if net is not None else None)


def _spec_or_none(path: str):
    """The checked spec (torch-free), or None when it has errors: every process reports them together
    when it loads the spec inside its world (`_joined`)."""
    from partc.errors import PartError
    from partc.spec import load

    try:
        return load(path)
    except PartError:
        return None


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc is not None:
        return launch(args)
    from partc.spec import load
    from partc.train import train

    early = _spec_or_none(args.spec)  # before torch is imported: the thread count depends on the network
    prepare_torch(args.threads, early)
    with _joined(args) as world:
        net = world.agreed(lambda: early if early is not None else load(args.spec))
        if args.seeds is not None:
            from partc.train.seeds import train_group

            _one_process_for_groups(world)
            train_group(net, args.out, args.seeds, device=args.device, resume=args.resume, epochs=args.epochs,
                        mode=args.mode, data_root=args.data_root, quiet=args.quiet, no_sharing=args.no_sharing)
            return 0
        results = train(net, args.out, device=args.device, resume=args.resume, epochs=args.epochs, mode=args.mode,
                        data_root=args.data_root, quiet=args.quiet, no_sharing=args.no_sharing, threads=args.threads,
                        world=world)
    return 0 if results is not None else 1


def cmd_extend(args: argparse.Namespace) -> int:
    if args.nproc is not None:
        return launch(args)
    from partc.train.extend import extend, extend_group

    prepare_torch(args.threads, _spec_or_none(args.spec))
    options = dict(epochs=args.epochs, device=args.device, mode=args.mode, data_root=args.data_root, quiet=args.quiet,
                   resume=args.resume, freeze=not args.no_freeze)
    with _joined(args) as world:
        if args.seeds is not None:
            _one_process_for_groups(world)
            extend_group(args.base_run, args.spec, args.out, args.seeds, **options)
            return 0
        results = extend(args.base_run, args.spec, args.out, world=world, **options)
    return 0 if results is not None else 1


def _seeds(text: str) -> list[int]:
    from partc.train.seeds import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _one_process_for_groups(world) -> None:
    from partc.errors import TrainError

    if world.distributed:
        raise TrainError("--seeds trains a seed group in one process; several processes train one run at a time",
                         hint="run the group without torchrun or --nproc")


@contextlib.contextmanager
def _joined(args: argparse.Namespace):
    """The world of this process (`partc.train.distributed`); a user error in a world of several processes
    ends the process at once with exit 2, as it does every other rank (see `exit_now`)."""
    from partc.errors import PartError
    from partc.train.distributed import DEFAULT_TIMEOUT_S, exit_now, joined

    with joined(args.device, args.dist_timeout or DEFAULT_TIMEOUT_S) as world:
        try:
            yield world
        except PartError as e:
            if not world.distributed:
                raise
            if world.main or not world.rank0_reports:
                sys.stderr.write(e.render() + "\n")  # one write: the ranks share the terminal
            exit_now(EXIT_USER_ERROR)


def launch(args: argparse.Namespace) -> int:
    """`--nproc N`: the same command in N processes on this machine, started by torchrun's launcher."""
    import os
    import uuid

    from partc.devices import cpu_threads
    from partc.errors import TrainError

    if "WORLD_SIZE" in os.environ:
        raise TrainError("--nproc was given to a process that torchrun started",
                         hint="use either torchrun or --nproc, not both")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import get_args_parser, run

    if args.threads is None:  # torchrun would set 1; share this machine's CPUs out instead
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_threads() // args.nproc)))
    launcher = get_args_parser().parse_args(
        ["--nnodes", "1", "--nproc-per-node", str(args.nproc), "--rdzv-backend", "c10d",
         "--rdzv-endpoint", "127.0.0.1:0", "--rdzv-id", str(uuid.uuid4()), "-m", "partc", *worker_argv(args)])
    try:
        run(launcher)
    except ChildFailedError as e:
        codes = sorted({failure.exitcode for failure in e.failures.values()})
        if codes == [EXIT_USER_ERROR]:
            return EXIT_USER_ERROR  # each worker printed its message
        print(f"partc: {len(e.failures)} of {args.nproc} processes failed (exit codes "
              f"{', '.join(map(str, codes))}); their output is above", file=sys.stderr)
        return 1
    except RendezvousError as e:
        raise TrainError(f"the {args.nproc} processes could not meet: {str(e).splitlines()[0]}") from None
    return 0


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The command line that gave `args`, without --nproc: what each launched process runs."""
    parser = args.parser
    argv = [args.command]
    for action in parser._actions:
        if action.dest in ("help", "nproc"):
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:
            argv.append(str(value))
            continue
        flag = max(action.option_strings, key=len)  # the long form
        if action.nargs == 0:
            if value:
                argv.append(flag)
        elif value is not None and value != action.default:
            argv += [flag, str(value)]
    return argv


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int_at_least(1), metavar="N",
                   help="train with N processes on this machine, started by torchrun's launcher (one per GPU; "
                        "see docs/train.md for torchrun and several machines)")
    p.add_argument("--dist-timeout", type=int_at_least(1), metavar="SECONDS",
                   help="under torchrun: how long a process waits for the others to join and at each "
                        "collective (default: 10 minutes)")


def add_training_options(p, whose: str) -> None:
    """The options `partc train` and `partc extend` share that change how a run trains."""
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="auto (default): cuda when available, else cpu")
    p.add_argument("--epochs", type=int_at_least(1), help=f"override {whose} epochs (with --resume: train longer)")
    p.add_argument("--mode", choices=["fused", "interleaved"], help=f"override {whose} training mode")
    p.add_argument("--data-root", help="folder where relative data paths of the spec are looked up first")


def add_output_options(p) -> None:
    """The options `partc train` and `partc extend` share for threads, output and several processes."""
    p.add_argument("--threads", type=int_at_least(1),
                   help="CPU threads for torch (default: 1 for a network of small layers, else the CPUs this "
                        "process may use; with --resume, the count the run trained with; docs/train.md)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, epoch lines or results table")
    add_distributed_options(p)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train every task of a spec in parallel into a run directory",
        description="Train all tasks of a .part spec at once (fused or PaRT-interleaved), with a checkpoint "
                    "per epoch, metrics, and a final per-task results table. See docs/train.md.")
    p.add_argument("spec", help="the .part file")
    p.add_argument("--out", help="run directory, or seed group folder with --seeds (default: runs/<network>, "
                                 "or runs/<network>_nosharing)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(with --seeds: every member; finished ones are kept, new seeds are added)")
    add_training_options(p, "the spec's")
    p.add_argument("--no-sharing", action="store_true",
                   help="train the no-sharing baseline: every task gets private copies of its path's segments")
    p.add_argument("--seeds", type=_seeds, metavar="1,2,3",
                   help="a seed group: one run per train seed into OUT/seed-N (same network, paths and data splits; "
                        "initial weights, data order and augmentation vary), marked by OUT/group.json")
    add_output_options(p)
    p.set_defaults(func=cmd_train, parser=p)

    p = subparsers.add_parser(
        "extend", help="train new tasks over a trained run, the old tasks' modules frozen (bit-identical)",
        description="Grow a trained network: GROWN.part is the base run's spec with tasks added (levels may gain "
                    "segments, appended). The base tasks keep the routes and weights they were trained with; only "
                    "the new tasks train. NEW_RUN is a normal run directory. See docs/extend.md.")
    p.add_argument("base_run", metavar="BASE_RUN", help="the finished run directory to grow")
    p.add_argument("spec", metavar="GROWN.part", help="the base spec with new tasks")
    p.add_argument("--out", required=True, metavar="NEW_RUN", help="the new run directory (not inside BASE_RUN)")
    p.add_argument("--resume", action="store_true", help="continue the extension in NEW_RUN from its last checkpoint")
    add_training_options(p, "the grown spec's")
    p.add_argument("--no-freeze", action="store_true",
                   help="fine-tune everything from the base weights (the old tasks then change: for comparison)")
    p.add_argument("--seeds", type=_seeds, metavar="1,2,3",
                   help="a seed group: one extension per train seed into NEW_RUN/seed-N (a base seed group is "
                        "extended member by member)")
    add_output_options(p)
    p.set_defaults(func=cmd_extend, parser=p)
