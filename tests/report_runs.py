"""Genuine run directories for the report tests, written through partc.run.

`make_run` does what `partc train` does, in miniature: it loads each task's
data with the data stage, saves checkpoints/init.pt, takes a few real Adam
steps per task per epoch (each task's optimizer owns its route's
parameters, as in PaRT), evaluates every split, and writes metrics.jsonl,
epoch checkpoints, last.pt, results.json and run.json per the contract in
docs/ARCHITECTURE.md. (Until the trainer lands on this branch; the files
are the contract's, so the report cannot tell the difference.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

import partc
from partc.data.load import load_all
from partc.run import atomic_write_text, epoch_checkpoint, run_paths, save_checkpoint

# Three tasks on one input share a trunk; `photo` reads another input through its stem.
SHARED_SPEC = """\
network report_demo {
  input grey: float[1, 8, 8]
  input photo: float[3, 8, 8]
  seed 5

  segment block(c) { conv(c, k=3, pad=1); batchnorm; relu }

  level l1 = 4 x block(8)              then relu
  level l2 = 4 x block(8)  residual    then relu, maxpool(2)
  level l3 = 4 x block(16)             then relu, avgpool

  task a { data synthetic(classes=3, samples=150, seed=1, noise=0.6) path l1[0, 1] l2[0, 1] l3[0, 1] }
  task b { data synthetic(classes=3, samples=150, seed=2, noise=0.6) path l1[1, 2] l2[1, 2] l3[1, 2] }
  task c { data synthetic(classes=6, samples=150, seed=3, noise=0.6) path l1[0, 3] l2[2, 3] l3[0, 3] }
  task photo {
    input photo
    stem { conv(1, k=1); relu }
    data synthetic(classes=2, samples=100, seed=4, noise=0.6)
    path l1[3] l2[3] l3[3]
  }
  train { epochs 2; batch 16; optimizer adam(lr=1e-2) }
}
"""

# The same tasks, no segment shared: the baseline of SHARED_SPEC.
BASELINE_SPEC = """\
network report_demo_private {
  input grey: float[1, 8, 8]
  input photo: float[3, 8, 8]
  seed 5

  segment block(c) { conv(c, k=3, pad=1); batchnorm; relu }

  level l1 = 7 x block(8)              then relu
  level l2 = 7 x block(8)  residual    then relu, maxpool(2)
  level l3 = 7 x block(16)             then relu, avgpool

  task a { data synthetic(classes=3, samples=150, seed=1, noise=0.6) path l1[0, 1] l2[0, 1] l3[0, 1] }
  task b { data synthetic(classes=3, samples=150, seed=2, noise=0.6) path l1[2, 3] l2[2, 3] l3[2, 3] }
  task c { data synthetic(classes=6, samples=150, seed=3, noise=0.6) path l1[4, 5] l2[4, 5] l3[4, 5] }
  task photo {
    input photo
    stem { conv(1, k=1); relu }
    data synthetic(classes=2, samples=100, seed=4, noise=0.6)
    path l1[6] l2[6] l3[6]
  }
  train { epochs 2; batch 16; optimizer adam(lr=1e-2) }
}
"""


@torch.no_grad()
def _evaluate(model, task: str, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.eval()
    logits = model(x, task=task)
    k = min(5, logits.shape[1])
    best = logits.topk(k, dim=1).indices
    return {
        "loss": float(F.cross_entropy(logits, y)),
        "top1": float((best[:, 0] == y).float().mean()),
        "top5": float((best == y[:, None]).any(dim=1).float().mean()),
        "samples": len(y),
    }


def make_run(run_dir: Path, spec_text: str = SHARED_SPEC, *, epochs: int = 2, steps: int = 6,
             baseline: str | None = None) -> Path:
    """Train `spec_text` for a few steps and write a complete run directory."""
    paths = run_paths(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths["spec"].write_text(spec_text, encoding="utf-8")
    net = partc.loads(spec_text, str(paths["spec"]))
    torch.manual_seed(net.seed)
    model = partc.compile(net)
    data = load_all(net)
    optimizers = {t: torch.optim.Adam(model.task_parameters(t), lr=1e-2) for t in net.tasks}
    stats = {t: {"mean": d.mean, "std": d.std, "labels": d.labels} for t, d in data.items()}

    def checkpoint(epoch: int) -> dict:
        return {"spec_hash": net.spec_hash, "network": net.name, "epoch": epoch, "model": model.state_dict(),
                "optimizer": {t: o.state_dict() for t, o in optimizers.items()}, "scheduler": None,
                "rng": torch.get_rng_state(), "data_stats": stats}

    save_checkpoint(paths["init"], checkpoint(0))
    rows = []
    gen = torch.Generator().manual_seed(0)
    for epoch in range(1, epochs + 1):
        for task, d in data.items():
            model.train()
            x, y = d.train
            for _ in range(steps):
                pick = torch.randint(len(y), (16,), generator=gen)
                loss = F.cross_entropy(model(x[pick], task=task), y[pick])
                optimizers[task].zero_grad()
                loss.backward()
                optimizers[task].step()
        for task, d in data.items():  # after the whole epoch: shared segments have moved for every task
            for split in ("train", "val", "test"):
                m = _evaluate(model, task, *getattr(d, split))
                rows.append({"epoch": epoch, "task": task, "split": split, **m, "time_s": 0.01})
        save_checkpoint(epoch_checkpoint(run_dir, epoch), checkpoint(epoch))
        save_checkpoint(paths["last"], checkpoint(epoch))
    atomic_write_text(paths["metrics"], "".join(json.dumps(r) + "\n" for r in rows))
    final = {r["task"]: {k: r[k] for k in ("top1", "top5", "loss", "samples")}
             for r in rows if r["split"] == "test" and r["epoch"] == epochs}
    results = {"tasks": final, "mean_top1": sum(m["top1"] for m in final.values()) / len(final)}
    atomic_write_text(paths["results"], json.dumps(results, indent=1))
    info = {"partc_version": partc.__version__, "network": net.name, "spec_hash": net.spec_hash,
            "spec_file": "report_demo.part", "mode": "interleaved", "device": "cpu", "epochs": epochs, "batch": 16,
            "seed": net.seed}
    if baseline is not None:
        info["baseline"] = baseline
    atomic_write_text(paths["info"], json.dumps(info, indent=1))
    return run_dir
