"""Export stage, input side: a trained run, one of its checkpoints, or a bare spec.

`load_source` hands the exporter a compiled model in eval mode plus, for
each task, what the metadata needs: class labels and the normalisation the
data stage applied (`state["data_stats"]`). A spec gives seeded random
weights and no normalisation: enough for smoke tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partc.errors import CheckpointError, ExportError
from partc.export.metadata import channel_stats


@dataclass
class ExportSource:
    net: Any  # partc.ir.Network
    model: Any  # partc.compiler.PartModel, eval mode
    stats: dict[str, dict[str, list]]  # task -> {"mean", "std", "labels"} (per channel)
    weights: str  # shown in metadata: "checkpoint epoch 3 (last.pt)" or "untrained ..."

    def tensors(self) -> dict[str, Any]:
        """The model's state dict as numpy arrays (views, no copies): what the emitter writes from."""
        return {name: t.detach().cpu().numpy() for name, t in self.model.state_dict().items()}

    def parameter_names(self) -> set[str]:
        """Which state-dict names are parameters (the others are buffers: running statistics)."""
        return {name for name, _ in self.model.named_parameters()}


def load_source(source: str | Path) -> ExportSource:
    """A run directory, a checkpoint file (.pt) inside one, or a .part spec."""
    import torch

    from partc.compiler import compile_network
    from partc.spec import load

    path = Path(source)
    if path.suffix == ".part":
        net = load(path)
        with torch.random.fork_rng():  # the same untrained weights on every call; the caller's RNG untouched
            torch.manual_seed(net.seed)
            model = compile_network(net).eval()
        stats = {name: {"labels": list(t.labels)} for name, t in net.tasks.items()}
        return ExportSource(net, model, _per_channel(net, stats), f"untrained (random init, seed {net.seed})")
    if not path.exists():
        raise CheckpointError(f"'{path}' does not exist",
                              hint="pass a run directory, a checkpoint file inside one, or a .part spec")
    if path.is_file() and path.suffix not in (".pt", ".pth"):
        raise CheckpointError(f"'{path}' is neither a checkpoint (.pt) nor a spec (.part)",
                              hint="pass a run directory, a checkpoint file inside one, or a .part spec")
    from partc.run import load_trained_model

    net, model, state = load_trained_model(path)
    data_stats = state.get("data_stats") or {}
    missing = [t for t in net.tasks if t not in data_stats]
    if missing:
        raise CheckpointError(
            f"checkpoint of '{path}' has no data_stats for task(s) {', '.join(missing)}",
            hint="the exported model must know the normalisation and labels it was trained with",
        )
    ckpt = path.name if path.is_file() else "last.pt"
    weights = f"checkpoint epoch {state.get('epoch', '?')} ({ckpt})"
    return ExportSource(net, model.eval(), _per_channel(net, data_stats), weights)


def _per_channel(net, data_stats: dict[str, dict]) -> dict[str, dict[str, list]]:
    out = {}
    for name, task in net.tasks.items():
        entry = data_stats[name]
        channels = net.inputs[task.input].shape[0]
        mean = channel_stats(entry.get("mean"), channels, 0.0, "mean")
        std = channel_stats(entry.get("std"), channels, 1.0, "std")
        if any(s <= 0 for s in std):
            raise ExportError(f"task '{name}': data_stats std {std} has a value <= 0")
        labels = [str(x) for x in (entry.get("labels") or task.labels)]
        if len(labels) != task.classes:
            raise ExportError(f"task '{name}': {len(labels)} labels in data_stats, but the head has {task.classes} classes")
        out[name] = {"mean": mean, "std": std, "labels": labels}
    return out
