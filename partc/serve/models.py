"""Serve stage, models: exported files loaded into ONNX Runtime, one session each (no torch).

`load_models(path)` finds the exported files under a folder (plain layout
`<name>.onnx` or Triton layout `<name>/<version>/model.onnx`) or takes one
`.onnx` file, reads each file's partc metadata (either kind: a task file or
a fused file, partc/export/metadata.py) and opens one session per file. A
file is refused at load, with a message, unless its metadata describes its
graph (input name, shape and dtype, an output per task with a logit per
label) and a trial run on a small batch gives outputs of those shapes: a
bad model stops the server at start-up instead of failing every request.

`LoadedModel.run` normalises raw input when the file says the caller must
(`normalization: caller`), runs the session and returns every task's
logits; `top_k` turns logits into labels with softmax probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partc.errors import ExportError
from partc.export.metadata import CALLER, ModelInfo, OutputInfo, graph_problems
from partc.onnxrt import graph_values, open_session


@dataclass
class LoadedModel:
    info: ModelInfo
    path: Path  # where it was loaded from; shown to the operator, never to HTTP clients
    session: object  # onnxruntime.InferenceSession
    version: str = "1"  # the Triton layout's version folder; a plain file is version 1

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def check_batch(self, x: np.ndarray) -> None:
        """Raise ValueError unless `x` is a non-empty batch of this model's samples."""
        shape = tuple(self.info.input_shape)
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] < 1:
            raise ValueError(f"expected a batch of shape [N, {', '.join(map(str, shape))}] "
                             f"(samples of shape {list(shape)}), got {list(x.shape)}")

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """What the graph takes for raw input in [0, 1]: (raw - mean) / std per channel, unless it normalises itself."""
        if self.info.normalization != CALLER:
            return raw
        (output,) = self.info.outputs  # a caller-normalised file is a task file: one task's statistics
        extra = (1,) * (len(self.info.input_shape) - 1)
        mean = np.asarray(output.mean, np.float32).reshape((-1, *extra))
        std = np.asarray(output.std, np.float32).reshape((-1, *extra))
        return ((raw - mean) / std).astype(np.float32, copy=False)

    def run(self, batch: np.ndarray, *, normalized: bool = False) -> dict[str, np.ndarray]:
        """Each output's logits (N, classes), by output name, for a batch of raw samples.

        `normalized`: the batch is already what the graph takes (the caller
        normalised it); only meaningful for `normalization: caller` files.
        """
        x = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_batch(x)
        return self.run_graph(x if normalized else self.normalise(x))

    def run_graph(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Each output's logits for a float32 batch the graph takes as it is (already checked and normalised)."""
        names = [o.name for o in self.info.outputs]
        return dict(zip(names, self.session.run(names, {self.info.input_name: x})))

    def predict(self, batch: np.ndarray, *, normalized: bool = False, task: str | None = None) -> np.ndarray:
        """One task's logits (N, classes): the task of a task file, or `task` of a fused file."""
        return self.run(batch, normalized=normalized)[self.output(task).name]

    def output(self, task: str | None = None) -> OutputInfo:
        """The output of `task` (None: the only one)."""
        if task is None:
            if len(self.info.outputs) > 1:
                raise ExportError(f"model '{self.name}' holds several tasks; choose one",
                                  hint=f"tasks: {', '.join(self.info.tasks)}")
            return self.info.outputs[0]
        if task not in self.info.tasks:
            raise ExportError(f"model '{self.name}' has no task '{task}'", hint=f"tasks: {', '.join(self.info.tasks)}")
        return self.info.output(task)

    def top_k(self, logits: np.ndarray, k: int, task: str | None = None) -> list[list[tuple[str, float]]]:
        """Per sample, the k most probable labels of `task` with their softmax probabilities."""
        labels = self.output(task).labels
        probs = softmax(logits)
        order = top_indices(probs, k)
        return [[(labels[j], float(p[j])) for j in row] for p, row in zip(probs, order)]

    def describe(self) -> dict:
        return {**self.info.to_json(), "provider": self.provider}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of finite logits, in float64 then back to float32 precision."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs


def top_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest values, largest first (ties: lower index first)."""
    k = max(1, min(k, probs.shape[1]))
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


def find_model_files(path: str | Path) -> list[Path]:
    """The exported .onnx files under `path` (plain or Triton layout), or `path` itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ExportError(f"'{path}' does not exist", hint="pass the -o folder of 'partc export' or one .onnx file")
    files = sorted(path.glob("*.onnx"))
    for model_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        versions = [v for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit() and (v / "model.onnx").is_file()]
        if versions:
            files.append(max(versions, key=lambda v: int(v.name)) / "model.onnx")  # Triton serves the newest
    if not files:
        raise ExportError(f"no exported models in '{path}'",
                          hint="expected <task>.onnx files or <task>/1/model.onnx (partc export --layout triton)")
    return files


def load_model(file: Path, device: str = "auto", threads: int | None = None, *, spin: bool = False) -> LoadedModel:
    """One file's model, refused (ExportError) unless its metadata describes its graph and a trial run agrees.

    ONNX Runtime's threads do not spin between calls unless `spin` (partc.onnxrt.session_options).
    """
    session = open_session(file, device, threads, spin=spin)
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map, str(file))
    problems = graph_problems(info, *graph_values(session))
    if problems:
        raise ExportError(f"'{file}': the metadata does not describe the graph: {'; '.join(problems)}",
                          hint="export the model again with 'partc export'")
    version = file.parent.name if file.name == "model.onnx" and file.parent.name.isdigit() else "1"
    model = LoadedModel(info, file, session, version)
    _trial_run(model)
    return model


def _trial_run(model: LoadedModel) -> None:
    """Run a batch of mid-grey samples: the outputs must be [batch, labels] per task (catches symbolic-size lies)."""
    rows = min(2, model.info.max_batch)
    raw = np.full((rows, *model.info.input_shape), 0.5, np.float32)
    try:
        outputs = model.run(raw)
    except Exception as e:  # ONNX Runtime raises several kinds; the operator needs the first line
        raise ExportError(f"'{model.path}': ONNX Runtime cannot run the model on a batch of {rows} "
                          f"({type(e).__name__}: {str(e).strip().splitlines()[0][:300]})") from None
    for output in model.info.outputs:
        shape = tuple(outputs[output.name].shape)
        if shape != (rows, len(output.labels)):
            raise ExportError(f"'{model.path}': task '{output.task}' gives logits of shape {list(shape)} for a batch "
                              f"of {rows}, but the metadata has {len(output.labels)} label(s): expected "
                              f"[{rows}, {len(output.labels)}]")


def load_models(path: str | Path, device: str = "auto", threads: int | None = None, *,
                spin: bool = False) -> dict[str, LoadedModel]:
    """Model name -> loaded model (a task file is named after its task, a fused file after its network)."""
    models: dict[str, LoadedModel] = {}
    for file in find_model_files(path):
        model = load_model(file, device, threads, spin=spin)
        if model.name in models:
            raise ExportError(f"model '{model.name}' is exported twice: {models[model.name].path} and {file}")
        models[model.name] = model
    return models


def _name_of_file(file: Path) -> str:
    """The model a file holds, by the layout's naming (<name>.onnx or <name>/<version>/model.onnx)."""
    return file.parent.parent.name if file.name == "model.onnx" else file.stem


def load_task(path: str | Path, task: str | None, device: str = "auto", threads: int | None = None) -> LoadedModel:
    """The model holding one task, from a file or an export folder (`model.output(task)` is the task's output).

    In a folder, the task's own file is loaded alone; a task without one is
    looked for in the folder's other files (a fused file holds every task).
    """
    files = find_model_files(path)
    if task is None and len(files) > 1:
        raise ExportError(f"'{path}' holds several models; choose a task with --task",
                          hint=f"models: {', '.join(_name_of_file(f) for f in files)}")
    if task is None or Path(path).is_file():
        model = load_model(files[0], device, threads)
        model.output(task)  # the task is in the file (or the file holds a single one)
        return model
    named = [f for f in files if _name_of_file(f) == task]
    for file in named + [f for f in files if f not in named]:
        model = load_model(file, device, threads)
        if task in model.info.tasks:
            return model
    raise ExportError(f"no exported task '{task}' in '{path}'", hint=f"models: {', '.join(_name_of_file(f) for f in files)}")
