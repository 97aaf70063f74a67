"""Stage 6, train: every task of a checked network in parallel, into a run directory.

    train(net, out_dir, device=..., resume=..., epochs=..., mode=...) -> results dict

Modules: `config` (train block -> settings), `sampling` (batching policy),
`loop` (fused and interleaved epochs, evaluation), `session` (model,
optimizers, data feeds and their checkpointable state), `runner` (the run
directory, checkpoints, resume), `results`, `progress`, `nosharing` (the
no-sharing baseline), `device` and `fast` (CUDA speed settings), `distributed`
(one run across the processes torchrun starts: DDP, rank-0 writes), `flops`,
`cli` (`partc train`, `partc extend`, `--nproc`).
"""

from __future__ import annotations

from partc.lazy import lazy_attributes

# Loaded on first use: `partc check` imports partc.train.cli to list the command, and must not pay for torch.
_LAZY = {"train": "partc.train.runner", "TrainConfig": "partc.train.config", "resolve_config": "partc.train.config"}
__all__ = sorted(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)
