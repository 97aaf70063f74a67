"""Real trained runs for the export and serve tests: `partc train`'s own output, one epoch, made once.

The run directories come from the trainer itself (`partc.train.train`), so
the export and serve tests read exactly what users' runs hold: spec.part,
run.json, the checkpoints with their data statistics, metrics and results.
"""

from __future__ import annotations

from pathlib import Path

import partc
from partc.train import train

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def make_trained_run(spec: str | Path, run_dir: str | Path, *, epochs: int = 1) -> Path:
    """Train `spec` for `epochs` into `run_dir` (CPU, quiet)."""
    train(partc.load(spec), run_dir, device="cpu", epochs=epochs, quiet=True)
    return Path(run_dir)


_EXPORTS: dict[tuple[str, str], tuple[Path, Path, list]] = {}


def exported_run(spec_name: str, tmp_path_factory, layout: str = "plain") -> tuple[Path, Path, list]:
    """(run_dir, export_dir, export results) of a trained run of specs/<spec_name>.part.

    Made once per test session and shared by the export and serve tests
    (training costs seconds on a small CPU).
    """
    from partc.export import export_tasks

    key = (spec_name, layout)
    if key not in _EXPORTS:
        base = tmp_path_factory.mktemp(f"{spec_name}_{layout}")
        run_dir = make_trained_run(SPECS / f"{spec_name}.part", base / "run")
        results = export_tasks(run_dir, base / "export", layout=layout)
        _EXPORTS[key] = (run_dir, base / "export", results)
    return _EXPORTS[key]
