"""Export stage: each task of a trained network as its own small ONNX model.

    export_tasks(run_dir_or_checkpoint_or_spec, out_dir, tasks=None, layout="plain") -> [TaskExport]

Each file holds only that task's stem, path segments and head, carries
metadata that makes it self-describing (partc/export/metadata.py), and is
verified against torch in ONNX Runtime before it is written.

This package's `__init__` stays torch-free (the export itself imports torch
lazily) so that partc.serve can read `partc.export.metadata` without torch.
"""

from __future__ import annotations

from partc.lazy import lazy_attributes

NATIVE_OPSET = 18  # what the dynamo exporter's op library (torchlib) is written for

_LAZY = {"export_tasks": "partc.export.pipeline"}
__all__ = ["NATIVE_OPSET", *_LAZY]
__getattr__ = lazy_attributes(__name__, _LAZY)
