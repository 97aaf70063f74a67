"""Export stage: the tasks of a trained network as small, verified ONNX models.

    export_tasks(run_dir_or_checkpoint_or_spec, out_dir, tasks=None, layout="plain") -> [TaskExport]
    export_fused(run_dir_or_checkpoint_or_spec, out_dir, tasks=None, layout="plain") -> FusedExport

A task file holds only that task's stem, path segments and head; a fused
file holds the union of its tasks' routes and returns every task's logits in
one pass. Files are written straight from the IR (partc/export/emit.py),
carry metadata that makes them self-describing (partc/export/metadata.py),
and are verified against torch in ONNX Runtime before they are written.

This package's `__init__` stays torch-free (the export itself imports torch
lazily, to load weights and to verify) so that partc.serve can read
`partc.export.metadata` without torch.
"""

from __future__ import annotations

from partc.lazy import lazy_attributes

NATIVE_OPSET = 18  # the opset the emitter writes by default (17 is supported too)

_LAZY = {"export_tasks": "partc.export.pipeline", "export_fused": "partc.export.pipeline"}
__all__ = ["NATIVE_OPSET", *_LAZY]
__getattr__ = lazy_attributes(__name__, _LAZY)
