"""The whole pipeline through the CLI: check -> compile -> train -> export -> ONNX Runtime.

The exported files, run by ONNX Runtime on each task's test split (real
digits data, normalised as the trainer normalised it), must reproduce the
per-task accuracy the trainer wrote to results.json, and the metadata must
carry what a server needs (labels, mean/std) to do the same.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import partc
from partc.cli import main
from partc.data import load_task_data

SPEC = """
network e2e {
  input digit: float[1, 8, 8]
  seed 5
  segment blk(c) { conv(c, k=3, pad=1); batchnorm; relu }
  level l1 = 4 x blk(8)
  level l2 = 4 x blk(8) residual then maxpool(2)
  level l3 = 4 x blk(16) then avgpool
  task low  { data digits(classes=[0, 1, 2, 3]) path random(2) }
  task mid  { data digits(classes=[3, 4, 5]) path random(2) }
  task high { data digits(classes=6..9, limit=120) path l1[0, 3] random(2) }
  share low, mid at l2
  train { epochs 2; batch 32; optimizer adam(lr=3e-3) }
}
"""


@pytest.mark.slow
def test_spec_to_onnx_runtime_reproduces_the_trainers_accuracy(tmp_path, capsys):
    spec = tmp_path / "e2e.part"
    spec.write_text(SPEC, encoding="utf-8")
    run, exported, generated = tmp_path / "run", tmp_path / "onnx", tmp_path / "gen"

    assert main(["check", str(spec)]) == 0
    assert main(["compile", str(spec), "-o", str(generated)]) == 0
    assert (generated / "e2e" / "model.py").is_file()
    assert main(["train", str(spec), "--out", str(run), "--device", "cpu", "-q"]) == 0
    assert main(["export", str(run), "-o", str(exported)]) == 0
    capsys.readouterr()

    net = partc.load(spec)
    results = json.loads((run / "results.json").read_text())["tasks"]
    for task in net.tasks:
        data = load_task_data(net, task)
        session = ort.InferenceSession(str(exported / f"{task}.onnx"), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        assert json.loads(meta["labels"]) == data.labels
        assert np.allclose(json.loads(meta["mean"]), data.mean) and np.allclose(json.loads(meta["std"]), data.std)

        x, y = data.test
        name = session.get_inputs()[0].name
        logits = session.run(None, {name: x.numpy()})[0]
        correct = int((logits.argmax(axis=1) == y.numpy()).sum())
        # results.json holds the trainer's torch figure on the same samples and weights
        assert correct == round(results[task]["top1"] * len(y)), task
        assert 0.5 < correct / len(y), f"{task} did not learn: {correct}/{len(y)}"
