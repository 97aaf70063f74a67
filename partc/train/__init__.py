"""Stage 6, train: every task of a checked network in parallel, into a run directory.

    train(net, out_dir, device=..., resume=..., epochs=..., mode=...) -> results dict

Modules: `config` (train block -> settings), `sampling` (batching policy),
`loop` (fused and interleaved epochs, evaluation), `session` (model,
optimizers, data feeds and their checkpointable state), `runner` (the run
directory, checkpoints, resume), `results`, `progress`, `nosharing` (the
no-sharing baseline), `device` and `fast` (CUDA speed settings), `flops`,
`cli` (`partc train`).
"""

from __future__ import annotations

__all__ = ["TrainConfig", "resolve_config", "train"]


def __getattr__(name: str):
    # Lazy: `partc check` imports partc.train.cli to list the command, and must not pay for torch.
    if name == "train":
        from partc.train.runner import train

        return train
    if name in ("TrainConfig", "resolve_config"):
        from partc.train import config

        return getattr(config, name)
    raise AttributeError(f"module 'partc.train' has no attribute '{name}'")
