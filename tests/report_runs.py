"""Genuine run directories for the report tests, written by the real trainer.

`make_run` writes the spec beside the run, trains it with `partc.train.train`
(CPU, a couple of epochs of a tiny network) and, like a user pointing the
report at a comparison, may record a no-sharing baseline run in run.json's
"baseline" field (docs/ARCHITECTURE.md, the run directory contract).
"""

from __future__ import annotations

import json
from pathlib import Path

import partc
from partc.run import atomic_write_text, run_paths
from partc.train import train

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


def make_run(run_dir: Path, spec_text: str = SHARED_SPEC, *, no_sharing: bool = False,
             baseline: str | None = None) -> Path:
    """Train `spec_text` (or its no-sharing baseline) into `run_dir`."""
    spec = run_dir.parent / f"{run_dir.name}.part"
    spec.write_text(spec_text, encoding="utf-8")
    train(partc.load(spec), run_dir, device="cpu", quiet=True, no_sharing=no_sharing)
    if baseline is not None:
        info = json.loads(run_paths(run_dir)["info"].read_text(encoding="utf-8"))
        atomic_write_text(run_paths(run_dir)["info"], json.dumps({**info, "baseline": baseline}, indent=2))
    return run_dir
