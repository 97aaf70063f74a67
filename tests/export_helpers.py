"""A genuine, small trained run directory for the export and serve tests.

Built only through partc/run.py's functions, following the run-directory
contract of docs/ARCHITECTURE.md: spec.part, run.json, checkpoints/init.pt,
epoch_0001.pt and last.pt. The weights come from a few real Adam steps per
task on synthetic data (class prototypes plus noise, raw values in [0, 1]),
in train mode, so BatchNorm running statistics are genuine too; data_stats
holds the per-channel mean/std of that data and the task's labels.
(Until the trainer lands; then `partc train` can make these runs.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

import partc
from partc.run import atomic_write_text, epoch_checkpoint, run_paths, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def synthetic_raw(net, task: str, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw inputs in [0, 1] (one noisy prototype per class) and their labels."""
    gen = torch.Generator().manual_seed(seed)
    shape = net.inputs[net.tasks[task].input].shape
    classes = net.tasks[task].classes
    prototypes = torch.rand(classes, *shape, generator=gen)
    labels = torch.randint(0, classes, (samples,), generator=gen)
    noise = 0.15 * torch.randn(samples, *shape, generator=gen)
    return (prototypes[labels] + noise).clamp(0, 1), labels


def make_trained_run(spec: str | Path, run_dir: str | Path, *, steps: int = 3, batch: int = 16, seed: int = 0) -> Path:
    """Write a run directory holding a model after `steps` Adam steps per task."""
    spec = Path(spec)
    run_dir = Path(run_dir)
    paths = run_paths(run_dir)
    text = spec.read_text(encoding="utf-8")
    net = partc.loads(text, str(spec))
    torch.manual_seed(seed)
    model = partc.compile(net)
    atomic_write_text(paths["spec"], text)
    atomic_write_text(paths["info"], json.dumps({
        "partc_version": partc.__version__, "network": net.name, "spec_hash": net.spec_hash,
        "spec_file": str(spec), "mode": "interleaved", "device": "cpu", "epochs": 1, "batch": batch,
        "seed": seed, "baseline": None,
    }, indent=2))
    base = {"spec_hash": net.spec_hash, "network": net.name}
    save_checkpoint(paths["init"], {**base, "epoch": 0, "model": model.state_dict()})

    data, stats = {}, {}
    for i, task in enumerate(net.tasks):
        raw, labels = synthetic_raw(net, task, steps * batch, seed + i)
        mean = raw.mean(dim=(0, 2, 3))
        std = raw.std(dim=(0, 2, 3))
        data[task] = ((raw - mean[:, None, None]) / std[:, None, None], labels)
        stats[task] = {"mean": mean.tolist(), "std": std.tolist(), "labels": list(net.tasks[task].labels)}

    optimizers = {t: torch.optim.Adam(model.task_parameters(t), lr=1e-3) for t in net.tasks}
    model.train()
    for step in range(steps):
        for task, (x, y) in data.items():
            rows = slice(step * batch, (step + 1) * batch)
            loss = F.cross_entropy(model(x[rows], task=task), y[rows])
            optimizers[task].zero_grad()
            loss.backward()
            optimizers[task].step()
    state = {
        **base, "epoch": 1, "model": model.state_dict(),
        "optimizer": {t: opt.state_dict() for t, opt in optimizers.items()}, "scheduler": None,
        "rng": torch.get_rng_state(), "data_stats": stats,
    }
    save_checkpoint(epoch_checkpoint(run_dir, 1), state)
    save_checkpoint(paths["last"], state)
    return run_dir


_EXPORTS: dict[tuple[str, str], tuple[Path, Path, list]] = {}


def exported_run(spec_name: str, tmp_path_factory, layout: str = "plain") -> tuple[Path, Path, list]:
    """(run_dir, export_dir, export results) of a trained run of specs/<spec_name>.part.

    Made once per test session and shared by the export and serve tests
    (exporting costs a few seconds per task on a small CPU).
    """
    from partc.export import export_tasks

    key = (spec_name, layout)
    if key not in _EXPORTS:
        base = tmp_path_factory.mktemp(f"{spec_name}_{layout}")
        run_dir = make_trained_run(SPECS / f"{spec_name}.part", base / "run")
        results = export_tasks(run_dir, base / "export", layout=layout)
        _EXPORTS[key] = (run_dir, base / "export", results)
    return _EXPORTS[key]
