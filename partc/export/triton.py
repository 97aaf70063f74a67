"""Export stage, layouts: where the files of each task go.

plain:   OUT/<task>.onnx
triton:  OUT/<task>/config.pbtxt, OUT/<task>/labels.txt, OUT/<task>/1/model.onnx
         (NVIDIA Triton's model repository: one model per task, version 1,
         served by its ONNX Runtime backend)
"""

from __future__ import annotations

from pathlib import Path

from partc.export.metadata import TaskInfo

LAYOUTS = ("plain", "triton")


def model_path(out_dir: Path, task: str, layout: str) -> Path:
    return out_dir / f"{task}.onnx" if layout == "plain" else out_dir / task / "1" / "model.onnx"


def config_pbtxt(info: TaskInfo, max_batch: int) -> str:
    """Triton's model configuration (protobuf text). Dims leave out the batch axis: max_batch_size > 0 adds it."""
    dims = ", ".join(str(d) for d in info.input_shape)
    return "\n".join([
        f'name: "{info.task}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch}",
        "input [",
        "  {",
        f'    name: "{info.input_name}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {dims} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{info.output_name}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {len(info.labels)} ]",
        '    label_filename: "labels.txt"',
        "  }",
        "]",
        "",
    ])


def labels_txt(info: TaskInfo) -> str:
    """One label per line, in logit order (Triton's classification extension reads it)."""
    return "".join(f"{label}\n" for label in info.labels)
