"""Export stage, layouts: where the files of each exported model go.

plain:   OUT/<model>.onnx
triton:  OUT/<model>/config.pbtxt, OUT/<model>/<labels file>, OUT/<model>/1/model.onnx
         (NVIDIA Triton's model repository: one model per task, version 1,
         served by its ONNX Runtime backend)

A model is a task (a task file) or the network (a fused file, one output
per task: one labels file per output).
"""

from __future__ import annotations

from pathlib import Path

from partc.export.metadata import ModelInfo, OutputInfo

LAYOUTS = ("plain", "triton")


def model_path(out_dir: Path, name: str, layout: str) -> Path:
    return out_dir / f"{name}.onnx" if layout == "plain" else out_dir / name / "1" / "model.onnx"


def labels_file(info: ModelInfo, output: OutputInfo) -> str:
    """The labels file of one output: labels.txt for a single output, labels_<task>.txt for several."""
    return "labels.txt" if len(info.outputs) == 1 else f"labels_{output.task}.txt"


def config_pbtxt(info: ModelInfo, *, dynamic_batching: bool = False) -> str:
    """Triton's model configuration (protobuf text). Dims leave out the batch axis: max_batch_size > 0 adds it."""
    dims = ", ".join(str(d) for d in info.input_shape)
    lines = [
        f'name: "{info.name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {info.max_batch}",
        "input [",
        "  {",
        f'    name: "{info.input_name}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {dims} ]",
        "  }",
        "]",
        "output [",
    ]
    for i, output in enumerate(info.outputs):
        lines += [
            "  {",
            f'    name: "{output.name}"',
            "    data_type: TYPE_FP32",
            f"    dims: [ {len(output.labels)} ]",
            f'    label_filename: "{labels_file(info, output)}"',
            "  }," if i < len(info.outputs) - 1 else "  }",
        ]
    lines.append("]")
    if dynamic_batching:
        lines.append("dynamic_batching { }")
    return "\n".join([*lines, ""])


def labels_txt(output: OutputInfo) -> str:
    """One label per line, in logit order (Triton's classification extension reads it)."""
    return "".join(f"{label}\n" for label in output.labels)
