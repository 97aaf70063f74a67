"""Serve stage: exported tasks on ONNX Runtime via `partc predict`, the HTTP app and a real server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest

from partc.cli import main
from partc.errors import ExportError
from partc.onnxrt import cuda_possible
from partc.serve.app import create_app
from partc.serve.models import load_models, load_task
from tests.export_helpers import ROOT

with warnings.catch_warnings():  # Starlette 1.0 warns its TestClient will move to httpx2; httpx is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs)


def _digit_samples(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (0..16) as raw inputs in [0, 1], the data stage's scale."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[:n].reshape(n, 1, 8, 8).astype(np.float32) / 16.0, digits.target[:n]


def test_a_non_partc_onnx_file_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, tmp_path / "foreign.onnx")
    with pytest.raises(ExportError, match="not a partc export: metadata lacks partc_version"):
        load_models(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match="no exported models"):
        load_models(empty)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_possible(), reason="needs a CUDA GPU and ONNX Runtime's CUDA provider")
def test_cuda_provider_matches_cpu(digits):
    raw, _ = _digit_samples(4)
    gpu = load_task(digits[1], "d01", device="cuda")
    assert gpu.provider == "CUDAExecutionProvider"
    np.testing.assert_allclose(gpu.predict(raw), load_task(digits[1], "d01", device="cpu").predict(raw), atol=1e-4)


# ---- without torch ----

NO_TORCH = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed here")
sys.meta_path.insert(0, Refuse())
"""


def test_serving_code_runs_without_torch(digits, mixed):
    """partc.serve (models, predict, the HTTP app) with torch unimportable; torch stays out of sys.modules."""
    script = NO_TORCH.format(blocked={"torch"}) + textwrap.dedent(f"""
        import json, numpy as np
        import warnings; warnings.simplefilter("ignore")
        import partc.serve.app, partc.serve.cli, partc.serve.inputs
        from partc.serve.models import load_models
        from starlette.testclient import TestClient
        out = {{}}
        for folder in [{str(digits[1])!r}, {str(mixed[1])!r}]:
            models = load_models(folder)
            client = TestClient(partc.serve.app.create_app(models))
            for name, model in models.items():
                x = np.random.rand(2, *model.info.input_shape).tolist()
                reply = client.post(f"/tasks/{{name}}/predict", json={{"inputs": x, "top": 1}})
                assert reply.status_code == 200, reply.text
                out[name] = reply.json()["predictions"][0]["top"][0]["label"]
        assert "torch" not in sys.modules
        print(json.dumps(out))
    """)
    proc = _run("-c", script)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == {"d01", "d23", "d45", "d67", "d89", "low", "high", "photos"}


def test_exported_files_run_with_onnxruntime_alone(digits, mixed):
    """No partc, no torch: ONNX Runtime, numpy and the file's own metadata reproduce partc's logits."""
    files = [str(r.path) for r in digits[2] + mixed[2]]
    script = NO_TORCH.format(blocked={"torch", "partc"}) + textwrap.dedent(f"""
        import json, numpy as np, onnxruntime as ort
        logits = {{}}
        for path in {files!r}:
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            meta = session.get_modelmeta().custom_metadata_map
            shape = json.loads(meta["input_shape"])
            raw = np.linspace(0, 1, 2 * int(np.prod(shape)), dtype=np.float32).reshape(2, *shape)
            mean = np.array(json.loads(meta["mean"]), np.float32).reshape(-1, 1, 1)
            std = np.array(json.loads(meta["std"]), np.float32).reshape(-1, 1, 1)
            y = session.run([meta["output_name"]], {{meta["input_name"]: (raw - mean) / std}})[0]
            assert y.shape == (2, len(json.loads(meta["labels"])))
            logits[meta["task"]] = y.tolist()
        assert "torch" not in sys.modules and "partc" not in sys.modules
        print(json.dumps(logits))
    """)
    proc = _run("-c", script)
    assert proc.returncode == 0, proc.stderr
    logits = json.loads(proc.stdout)
    for r in digits[2] + mixed[2]:
        model = load_task(r.path, r.task)
        raw = np.linspace(0, 1, 2 * int(np.prod(r.info.input_shape)), dtype=np.float32).reshape(2, *r.info.input_shape)
        np.testing.assert_allclose(logits[r.task], model.predict(raw), atol=1e-6)


# ---- the HTTP app, in process ----

def test_app_options_and_limits(digits):
    models = load_models(digits[1])
    client = TestClient(create_app(models, max_body=4096))
    model = models["d45"]
    raw, _ = _digit_samples(2)
    reply = client.post("/tasks/d45/predict", json={"inputs": raw.tolist(), "top": 50, "logits": True})
    assert reply.status_code == 200
    predictions = reply.json()["predictions"]
    assert [len(p["top"]) for p in predictions] == [2, 2]  # capped at the task's classes
    np.testing.assert_allclose([p["logits"] for p in predictions], model.predict(raw), atol=1e-6)
    normalised = model.normalise(raw)
    same = client.post("/tasks/d45/predict", json={"inputs": normalised.tolist(), "normalized": True, "logits": True})
    np.testing.assert_allclose([p["logits"] for p in same.json()["predictions"]], model.predict(raw), atol=1e-5)

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"inputs": ['
        for _ in range(100):
            yield b"0.5, " * 20
    assert client.post("/tasks/d45/predict", content=chunks()).status_code == 413
    too_many = np.zeros((65, 1, 8, 8)).tolist()
    big_client = TestClient(create_app(models))
    reply = big_client.post("/tasks/d45/predict", json={"inputs": too_many})
    assert reply.status_code == 422 and "max batch 64" in reply.json()["error"]
    for body, message in [({"inputs": [[[[0] * 8] * 8]], "top": 0}, "'top' must be a positive integer"),
                          ({"inputs": [[[[0] * 8] * 8]], "logits": "yes"}, "'logits' must be true or false"),
                          ([1, 2], "must be a JSON object with 'inputs'")]:
        reply = client.post("/tasks/d45/predict", json=body)
        assert reply.status_code == 422 and message in reply.json()["error"]


# ---- the real server ----

@pytest.fixture
def server(digits, tmp_path):
    """A real `partc serve` process on a free loopback port (port 0: the server prints the one it got)."""
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "partc", "serve", str(digits[1]), "--host", "127.0.0.1",
                             "--port", "0", "--max-body", "20000"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        base = None
        while True:
            assert proc.poll() is None, log_path.read_text()
            found = re.search(r"http://127\.0\.0\.1:\d+", log_path.read_text())
            base = found.group(0) if found else None
            try:
                if base and httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up: " + log_path.read_text()
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_serve_on_a_busy_port_is_a_user_error(digits, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(digits[1]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


@pytest.mark.slow
def test_server_answers_good_and_bad_requests(server, digits):
    base, proc = server
    raw, _ = _digit_samples(3)
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok", "tasks": 5}
        tasks = client.get("/tasks").json()["tasks"]
        assert sorted(tasks) == ["d01", "d23", "d45", "d67", "d89"]
        assert tasks["d23"]["outputs"][0]["labels"] == ["2", "3"]
        assert tasks["d23"]["input"] == {"name": "digit", "shape": [1, 8, 8], "dtype": "float32"}
        assert client.get("/tasks/d67").json() == tasks["d67"]
        reply = client.post("/tasks/d01/predict", json={"inputs": raw.tolist(), "top": 1, "logits": True})
        assert reply.status_code == 200
        model = load_task(digits[1], "d01")
        expected = model.predict(raw)
        body = reply.json()
        assert body["task"] == "d01" and len(body["predictions"]) == 3
        np.testing.assert_allclose([p["logits"] for p in body["predictions"]], expected, atol=1e-5)
        assert [p["top"][0]["label"] for p in body["predictions"]] == [model.output().labels[i] for i in expected.argmax(1)]

        sample = raw[0].tolist()
        bad = [
            (client.post, "/tasks/nope/predict", {"json": {"inputs": [sample]}}, 404, "unknown task 'nope'"),
            (client.post, "/tasks/d01/predict", {"json": {"inputs": sample}}, 422, "[N, 1, 8, 8]"),
            (client.post, "/tasks/d01/predict", {"json": {"inputs": [[[[0.5] * 7] * 8]]}}, 422, "[N, 1, 8, 8]"),
            (client.post, "/tasks/d01/predict", {"json": {"inputs": [[[["x"] * 8] * 8]]}}, 422, "array of numbers"),
            (client.post, "/tasks/d01/predict", {"content": b'{"inputs": [1, 2'}, 400, "malformed JSON"),
            (client.post, "/tasks/d01/predict", {"json": {"inputs": np.zeros((100, 1, 8, 8)).tolist()}}, 413, "limit of 20000"),
            (client.get, "/tasks/d01/predict", {}, 405, "use POST"),
            (client.get, "/nowhere", {}, 404, "no endpoint /nowhere"),
        ]
        for method, url, kwargs, status, message in bad:
            reply = method(url, **kwargs)
            assert reply.status_code == status, (url, reply.text)
            assert message in reply.json()["error"]
            assert client.get("/health").status_code == 200  # still serving
        assert client.post("/tasks/d01/predict", json={"inputs": [sample]}).status_code == 200
    assert proc.poll() is None


@pytest.mark.slow
def test_server_handles_concurrent_requests_without_torch(server):
    """16 requests in flight at once all succeed; the server process never loaded torch."""
    import concurrent.futures

    base, proc = server
    raw, _ = _digit_samples(4)

    def call(i: int) -> int:
        task = ["d01", "d23", "d45", "d67", "d89"][i % 5]
        return httpx.post(f"{base}/tasks/{task}/predict", json={"inputs": raw.tolist()}, timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(call, range(48))) == [200] * 48
    maps = Path(f"/proc/{proc.pid}/maps")
    if maps.exists():
        loaded = maps.read_text()
        assert "onnxruntime" in loaded and "libtorch" not in loaded
    if os.name == "posix":
        assert proc.poll() is None


def test_registering_the_commands_imports_no_heavy_library():
    """`partc check` and friends must not pay for torch, onnx, ONNX Runtime or Starlette at start-up."""
    script = ("import argparse, sys, partc.export.cli, partc.serve.cli\n"
              "sub = argparse.ArgumentParser().add_subparsers()\n"
              "partc.export.cli.register(sub); partc.serve.cli.register(sub)\n"
              "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'starlette', 'uvicorn', 'numpy') if m in sys.modules))")
    proc = _run("-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
