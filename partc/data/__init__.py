"""Stage: task data. The catalog of sources (torch-free, read by the checker) and their loaders.

    load_task_data(net, task, data_root=None) -> TaskData   (partc.data.load)
    load_all(net, data_root=None) -> {task: TaskData}
    augment_batch(x, generator)                              (partc.data.augment)
    perspective_batch(x, generator, distortion_scale, p=0.5)

The loaders import torch, so they are imported on first use: `partc check`
reads `partc.data.catalog` without paying for torch.
"""

from __future__ import annotations

from partc.lazy import lazy_attributes

_LAZY = {
    "TaskData": "partc.data.load",
    "load_task_data": "partc.data.load",
    "load_all": "partc.data.load",
    "augment_batch": "partc.data.augment",
    "perspective_batch": "partc.data.augment",
}
__all__ = sorted(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)
