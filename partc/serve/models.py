"""Serve stage, models: exported tasks loaded into ONNX Runtime, one session each (no torch).

`load_models(path)` finds the exported files under a folder (plain layout
`<task>.onnx` or Triton layout `<task>/<version>/model.onnx`) or takes one
`.onnx` file, reads each file's partc metadata and opens one session per
task. `TaskModel.predict` normalises raw input with the metadata's mean/std,
runs the session and returns logits; `top_k` turns logits into labels with
softmax probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partc.errors import ExportError
from partc.export.metadata import TaskInfo
from partc.onnxrt import open_session


@dataclass
class TaskModel:
    info: TaskInfo
    path: Path
    session: object  # onnxruntime.InferenceSession

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def check_batch(self, x: np.ndarray) -> None:
        """Raise ValueError unless `x` is a non-empty batch of this task's samples."""
        shape = tuple(self.info.input_shape)
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] < 1:
            raise ValueError(f"expected a batch of shape [N, {', '.join(map(str, shape))}] "
                             f"(samples of shape {list(shape)}), got {list(x.shape)}")

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """(raw - mean) / std per channel, for raw input in [0, 1]."""
        channels = self.info.input_shape[0]
        extra = (1,) * (len(self.info.input_shape) - 1)
        mean = np.asarray(self.info.mean, np.float32).reshape((channels, *extra))
        std = np.asarray(self.info.std, np.float32).reshape((channels, *extra))
        return (raw - mean) / std

    def predict(self, batch: np.ndarray, *, normalized: bool = False) -> np.ndarray:
        """Logits (N, classes) of a batch of raw (or, with `normalized`, model-ready) samples."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_batch(x)
        if not normalized:
            x = self.normalise(x).astype(np.float32, copy=False)
        return self.session.run([self.info.output_name], {self.info.input_name: x})[0]

    def top_k(self, logits: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per sample, the k most probable labels with their softmax probabilities."""
        k = max(1, min(k, len(self.info.labels)))
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.info.labels[j], float(p[j])) for j in row] for p, row in zip(probs, order)]

    def describe(self) -> dict:
        return {**self.info.to_json(), "file": str(self.path), "provider": self.provider}


def find_model_files(path: str | Path) -> list[Path]:
    """The exported .onnx files under `path` (plain or Triton layout), or `path` itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ExportError(f"'{path}' does not exist", hint="pass the -o folder of 'partc export' or one .onnx file")
    files = sorted(path.glob("*.onnx"))
    for task_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        versions = [v for v in task_dir.iterdir() if v.is_dir() and v.name.isdigit() and (v / "model.onnx").is_file()]
        if versions:
            files.append(max(versions, key=lambda v: int(v.name)) / "model.onnx")  # Triton serves the newest
    if not files:
        raise ExportError(f"no exported models in '{path}'",
                          hint="expected <task>.onnx files or <task>/1/model.onnx (partc export --layout triton)")
    return files


def load_model(file: Path, device: str = "auto", threads: int | None = None) -> TaskModel:
    session = open_session(file, device, threads)
    info = TaskInfo.from_metadata(session.get_modelmeta().custom_metadata_map, str(file))
    return TaskModel(info, file, session)


def load_models(path: str | Path, device: str = "auto", threads: int | None = None) -> dict[str, TaskModel]:
    """Task name -> loaded model, for every exported task under `path`."""
    models: dict[str, TaskModel] = {}
    for file in find_model_files(path):
        model = load_model(file, device, threads)
        if model.info.task in models:
            raise ExportError(f"task '{model.info.task}' is exported twice: {models[model.info.task].path} and {file}")
        models[model.info.task] = model
    return models


def _task_of_file(file: Path) -> str:
    """The task a file holds, by the layout's naming (<task>.onnx or <task>/<version>/model.onnx)."""
    return file.parent.parent.name if file.name == "model.onnx" else file.stem


def load_task(path: str | Path, task: str | None, device: str = "auto", threads: int | None = None) -> TaskModel:
    """One task's model from a file or an export folder (only that task's file is loaded)."""
    files = find_model_files(path)
    if task is None:
        if len(files) > 1:
            raise ExportError(f"'{path}' holds several tasks; choose one with --task",
                              hint=f"tasks: {', '.join(_task_of_file(f) for f in files)}")
        chosen = files[0]
    else:
        named = [f for f in files if _task_of_file(f) == task] or (files if Path(path).is_file() else [])
        if not named:
            raise ExportError(f"no exported task '{task}' in '{path}'",
                              hint=f"tasks: {', '.join(_task_of_file(f) for f in files)}")
        chosen = named[0]
    model = load_model(chosen, device, threads)
    if task is not None and model.info.task != task:
        raise ExportError(f"'{chosen}' holds task '{model.info.task}', not '{task}'")
    return model
