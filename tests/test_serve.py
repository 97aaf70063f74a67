"""Serve stage over HTTP: real `partc serve` processes on loopback, standard and hostile clients.

One server process serves the trained digits export for most tests of this
module (started once); a second one serves a hand-built fused file behind a
token and is stopped with SIGTERM while a client stalls. Every loop here is
bounded in count and time, and every process started is stopped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import socket
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partc.cli import main
from partc.errors import RequestError
from partc.serve import legacy, v2
from partc.serve.batching import Batcher
from partc.serve.cli import bind_warning
from partc.serve.jsonbody import MAX_DEPTH, BodyReader, _depth_loop, _depth_numpy, loads, nesting_depth
from partc.serve.metrics import ServeMetrics
from partc.serve.models import LoadedModel, load_models, load_task, softmax
from tests.serve_helpers import raw_exchange, read_until_closed, request_bytes, running_server, status_of
from tests.test_predict import digit_samples

MiB = 1024 * 1024
SERVER_A = ("--header-timeout", "1", "--body-timeout", "1.5", "--max-connections", "40", "--shutdown-grace", "1")


@pytest.fixture(scope="module")
def server(digits, tmp_path_factory):
    """The digits export (five task files) behind one real server for the whole module."""
    log = tmp_path_factory.mktemp("server_a") / "server.log"
    with running_server(digits[1], log, *SERVER_A) as running:
        yield running


@pytest.fixture(scope="module")
def default_server(digits, tmp_path_factory):
    """The digits export behind a server with every limit at its default (16 MiB bodies, 30 s body timeout)."""
    log = tmp_path_factory.mktemp("server_defaults") / "server.log"
    with running_server(digits[1], log) as running:
        yield running


def v2_body(data, shape=(1, 1, 8, 8), name="digit", datatype="FP32", **extra) -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}],
                       **extra}).encode()


def expected_logits(model_file: Path, raw: np.ndarray) -> np.ndarray:
    """ONNX Runtime called directly, normalising with the file's own metadata: what the server must return."""
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    mean = np.array(json.loads(meta["mean"]), np.float32).reshape(-1, 1, 1)
    std = np.array(json.loads(meta["std"]), np.float32).reshape(-1, 1, 1)
    return session.run(["logits"], {meta["input_name"]: (raw - mean) / std})[0]


# ---- standard clients ----

def test_tritonclient_speaks_to_the_server(server, digits):
    """Triton's own HTTP client: health, metadata, FP32 inference (binary and JSON), classification, errors."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    raw, _ = digit_samples(3)
    expected = expected_logits(digits[1] / "d45.onnx", raw)
    labels = ["4", "5"]
    client = triton.InferenceServerClient(url=server.base.removeprefix("http://"), network_timeout=30)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("d45")
        assert not client.is_model_ready("nope")
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification"]
        meta = client.get_model_metadata("d45")
        assert meta["inputs"] == [{"name": "digit", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
        assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]},
                                   {"name": "logits.top_k", "datatype": "BYTES", "shape": [-1, -1]}]
        assert meta["versions"] == ["1"] and meta["partc"]["outputs"][0]["labels"] == labels
        for binary in (True, False):
            tensor = triton.InferInput("digit", list(raw.shape), "FP32")
            tensor.set_data_from_numpy(raw, binary_data=binary)
            outputs = [triton.InferRequestedOutput("logits", binary_data=binary),
                       triton.InferRequestedOutput("logits.top_k", binary_data=binary)]
            result = client.infer("d45", [tensor], outputs=outputs, request_id="r1", parameters={"top_k": 2})
            np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-5, atol=1e-6)
            top = result.as_numpy("logits.top_k")
            assert top.shape == (3, 2)
            for row, logits in zip(top, expected):
                probability, index, label = _text(row[0]).split(":")
                assert int(index) == logits.argmax() and label == labels[logits.argmax()]
                assert float(probability) == pytest.approx(softmax(logits[None])[0].max(), abs=1e-7)
            assert result.get_response()["id"] == "r1"
        tensor = triton.InferInput("digit", list(raw.shape), "FP32")
        tensor.set_data_from_numpy(raw)
        everything = client.infer("d45", [tensor])  # no outputs named: all of them, in binary
        np.testing.assert_allclose(everything.as_numpy("logits"), expected, rtol=1e-5, atol=1e-6)
        assert everything.as_numpy("logits.top_k").shape == (3, 2)
        classified = client.infer("d45", [tensor], outputs=[triton.InferRequestedOutput("logits", class_count=1)])
        for row, logits in zip(classified.as_numpy("logits"), expected):  # Triton's classification: logit:index:label
            value, index, label = _text(row[0]).split(":")
            assert (float(value), int(index), label) == (pytest.approx(logits.max(), abs=1e-6), logits.argmax(),
                                                         labels[logits.argmax()])
        wrong = triton.InferInput("digit", [1, 1, 8, 7], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 1, 8, 7), np.float32))
        with pytest.raises(InferenceServerException, match=r"takes \[N, 1, 8, 8\]"):
            client.infer("d45", [wrong])
    finally:
        client.close()


def _text(element) -> str:
    """A BYTES element as tritonclient hands it back: bytes from binary outputs, str from JSON ones."""
    return element.decode() if isinstance(element, bytes) else element


def test_v2_over_plain_http_versions_and_nested_data(server, digits):
    raw, _ = digit_samples(2)
    with httpx.Client(base_url=server.base, timeout=30) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/models/d01/versions/1").json()["name"] == "d01"
        assert client.get("/v2/models/d01/versions/1/ready").status_code == 200
        reply = client.get("/v2/models/d01/versions/7")
        assert reply.status_code == 404 and "has no version '7'" in reply.json()["error"]
        nested = client.post("/v2/models/d01/versions/1/infer", content=v2_body(raw.tolist(), raw.shape))
        flat = client.post("/v2/models/d01/infer", content=v2_body(raw.ravel().tolist(), raw.shape))
        assert nested.status_code == flat.status_code == 200
        assert nested.json() == flat.json()
        logits = nested.json()["outputs"][0]
        assert logits["name"] == "logits" and logits["shape"] == [2, 2]
        np.testing.assert_allclose(np.reshape(logits["data"], (2, 2)), expected_logits(digits[1] / "d01.onnx", raw),
                                   rtol=1e-5, atol=1e-6)
        model = load_task(digits[1], "d01")
        normalised = model.normalise(raw)
        again = client.post("/v2/models/d01/infer", content=v2_body(normalised.ravel().tolist(), raw.shape,
                                                                      parameters={"normalized": True}))
        np.testing.assert_allclose(again.json()["outputs"][0]["data"], logits["data"], rtol=1e-5, atol=1e-6)
        for path in ("/v2/models/d01", "/tasks", "/tasks/d01"):  # no file-system paths in what clients see
            text = client.get(path).text
            assert str(digits[1]) not in text and ".onnx" not in text


# ---- hostile clients ----

def _with_value(value: str, shape=(1, 1, 8, 8)) -> bytes:
    """A v2 body whose last data value is `value`, written verbatim."""
    return v2_body([0.5] * 63 + ["@"], shape).replace(b'"@"', value.encode())


_BINARY_HEADER = json.dumps({"inputs": [{"name": "digit", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 256}}]}).encode()


HOSTILE = [  # (what, method, path, body, extra headers, status, words in the error)
    ("nesting [ x 2000", "POST", "/v2/models/d01/infer", b"[" * 2000, {}, 400, "nested 2000 levels deep"),
    ("a 5001-digit integer in the data", "POST", "/v2/models/d01/infer", _with_value("1" * 5001), {}, 422,
     "more than 100 digits"),
    ("a 5001-digit integer as top_k", "POST", "/v2/models/d01/infer",
     v2_body([0.5] * 64, parameters={"top_k": "@"}).replace(b'"@"', b"7" * 5001), {}, 422, "more than 100 digits"),
    ("1e400 as an integer (a shape entry)", "POST", "/v2/models/d01/infer",
     v2_body([0.5] * 64, ["@", 1, 8, 8]).replace(b'"@"', b"1e400"), {}, 422, "a shape entry is out of range"),
    ("10**30 as top_k", "POST", "/v2/models/d01/infer", v2_body([0.5] * 64, parameters={"top_k": 10**30}), {},
     422, "out of range"),
    ("1e400 in the data", "POST", "/v2/models/d01/infer", _with_value("1e400"), {}, 422, "is out of range"),
    ("1e39 in the data (beyond FP32)", "POST", "/v2/models/d01/infer", _with_value("1e39"), {}, 422,
     "is out of range"),
    ("NaN in the data", "POST", "/v2/models/d01/infer", _with_value("NaN"), {}, 400, "NaN is not JSON"),
    ("null in the data", "POST", "/v2/models/d01/infer", _with_value("null"), {}, 400, "null, strings"),
    ("3e38 in every cell: overflows inside the network", "POST", "/v2/models/d01/infer", v2_body([3e38] * 64), {},
     422, "computed non-finite logits"),
    ("an FP16 tensor", "POST", "/v2/models/d01/infer", v2_body([0.5] * 64, datatype="FP16"), {}, 400, "is FP32"),
    ("a wrong input name", "POST", "/v2/models/d01/infer", v2_body([0.5] * 64, name="x"), {}, 400,
     "takes one input, 'digit'"),
    ("a wrong shape", "POST", "/v2/models/d01/infer", v2_body([0.5] * 56, (1, 1, 8, 7)), {}, 400,
     r"takes [N, 1, 8, 8]"),
    ("data that does not fill the shape", "POST", "/v2/models/d01/infer", v2_body([0.5] * 60), {}, 400,
     "holds 60 values"),
    ("a batch of 65, over max_batch 64", "POST", "/v2/models/d01/infer", v2_body([0.5] * 65 * 64, (65, 1, 8, 8)), {},
     422, "exceeds model 'd01's max batch 64"),
    ("[], x 300,000: more values than any batch", "POST", "/v2/models/d01/infer", b"[" + b"[]," * 300_000 + b"[]]",
     {}, 413, "more than 5761 JSON values"),
    ("an unknown output", "POST", "/v2/models/d01/infer", v2_body([0.5] * 64, outputs=[{"name": "probs"}]), {}, 400,
     "unknown output 'probs'"),
    ("an output named by a list", "POST", "/v2/models/d01/infer", v2_body([0.5] * 64, outputs=[{"name": ["x"]}]), {},
     400, "unknown output ['x']"),
    ("inputs as an object", "POST", "/v2/models/d01/infer", b'{"inputs": {"name": "digit"}}', {}, 400,
     "must be a list of one tensor"),
    ("a shape of strings", "POST", "/v2/models/d01/infer", v2_body([0.5] * 64, ["1", 1, 8, 8]), {}, 400,
     "must be a whole number"),
    ("binary data of the wrong size", "POST", "/v2/models/d01/infer",
     _BINARY_HEADER + bytes(100), {"inference-header-content-length": str(len(_BINARY_HEADER))}, 400,
     "binary_data_size 256 and 100 bytes"),
    ("a gzip body", "POST", "/v2/models/d01/infer", v2_body([0.5] * 64), {"content-encoding": "gzip"}, 415,
     "not accepted"),
    ("malformed JSON", "POST", "/v2/models/d01/infer", b'{"inputs": [1, 2', {}, 400, "malformed JSON"),
    ("not UTF-8", "POST", "/v2/models/d01/infer", b'{"id": "\xff\xfe"}', {}, 400, "not UTF-8"),
    ("an unknown model", "POST", "/v2/models/nope/infer", v2_body([0.5] * 64), {}, 404, "unknown model 'nope'"),
    ("GET on infer", "GET", "/v2/models/d01/infer", b"", {}, 405, "use POST"),
    ("an unknown path", "GET", "/v3/anything", b"", {}, 404, "no endpoint /v3/anything"),
    ("the first API, nested [ x 2000", "POST", "/tasks/d01/predict", b"[" * 2000, {}, 400, "nested 2000"),
    ("the first API, 3e38 everywhere", "POST", "/tasks/d01/predict",
     json.dumps({"inputs": [[[[3e38] * 8] * 8]]}).encode(), {}, 422, "non-finite logits"),
    ("the first API, strings", "POST", "/tasks/d01/predict", json.dumps({"inputs": [[[["x"] * 8] * 8]]}).encode(), {},
     422, "must be numbers"),
    ("the first API, a sample without its batch", "POST", "/tasks/d01/predict",
     json.dumps({"inputs": [[[0.5] * 8] * 8]}).encode(), {}, 422, "[N, 1, 8, 8]"),
]


def test_hostile_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(server):
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for what, method, path, body, headers, status, words in HOSTILE:
            reply = client.request(method, path, content=body, headers=headers)
            assert reply.status_code == status, (what, reply.text[:300])
            assert words in reply.json()["error"], (what, reply.json())
            assert client.get("/v2/health/live").status_code == 200
        assert client.post("/v2/models/d01/infer", content=v2_body([0.5] * 64)).status_code == 200
    big = raw_exchange(server.port, request_bytes("POST", "/v2/models/d01/infer", headers={"content-length": "99999999"}))
    assert status_of(big) == 413 and b"exceeds the limit of 16777216 bytes" in big  # refused on Content-Length alone
    assert "Traceback" not in server.log()


def test_health_answers_within_a_second_while_16_clients_send_16_mib_bodies(default_server):
    """The acceptance test: each of 16 clients sends a 16 MiB body (8 of `[],`, 8 one huge string), default limits."""
    server = default_server
    junk = b"[" + b"[]," * ((16 * MiB - 2) // 3)
    junk += b"]" * (16 * MiB - len(junk))
    string = b'{"id": "' + b"a" * (16 * MiB - 10) + b'"}'
    assert len(junk) == len(string) == 16 * MiB
    bodies = [junk, string] * 8
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=server.base, timeout=5) as client:
            deadline = time.monotonic() + 60
            while not done.is_set() and time.monotonic() < deadline:
                start = time.perf_counter()
                assert client.get("/v2/health/live").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda body: raw_exchange(server.port, request_bytes(
                "POST", "/v2/models/d01/infer", body), timeout=60), bodies))
    finally:
        done.set()
        prober.join(timeout=30)
    assert [status_of(r) for r in replies] == [413, 400] * 8, [r[:200] for r in replies]
    assert latencies and max(latencies) < 1.0, f"slowest /v2/health/live: {max(latencies):.3f} s"
    assert httpx.get(f"{server.base}/v2/health/live", timeout=5).status_code == 200


def test_timeouts_the_connection_limit_and_disconnects(server):
    start = time.monotonic()
    partial_headers = raw_exchange(server.port, b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Slow: ", timeout=5)
    assert status_of(partial_headers) == 408 and time.monotonic() - start < 3  # --header-timeout 1
    start = time.monotonic()
    partial_body = raw_exchange(server.port, request_bytes("POST", "/v2/models/d01/infer", b"{",
                                                           {"content-length": "1000"}), timeout=5)
    assert status_of(partial_body) == 408 and b"1 of 1000 bytes" in partial_body and time.monotonic() - start < 4
    with socket.create_connection(("127.0.0.1", server.port)) as idle:
        assert read_until_closed(idle, 5) == b""  # an idle connection is closed after the header timeout

    before = server.log().count("went away")
    with socket.create_connection(("127.0.0.1", server.port)) as leaving:
        leaving.sendall(request_bytes("POST", "/v2/models/d01/infer", b"[0.5, " * 100, {"content-length": "100000"}))
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while server.log().count("went away") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log()
    assert log.count("went away") == before + 1 and "went away after 600 of 100000 body bytes" in log
    assert "Traceback" not in log

    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]  # the limit: 40
    busy = []
    try:
        for s in stalled:
            s.sendall(b"GET /v2 HTTP/1.1\r\n")  # headers begun, never finished
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as probe:
            probe.sendall(request_bytes("GET", "/v2/health/live"))
            assert status_of(probe.recv(1000)) == 200
        assert read_until_closed(stalled[0], 2) == b""  # the oldest stalled connection made room ...
        stalled[-1].setblocking(False)
        with pytest.raises(BlockingIOError):
            stalled[-1].recv(1)  # ... and the newest is still open (not a header timeout closing them all)
        for _ in range(40):  # now every connection is busy with a request (its body still coming)
            busy.append(socket.create_connection(("127.0.0.1", server.port)))
            busy[-1].sendall(request_bytes("POST", "/v2/models/d01/infer", b"[", {"content-length": "1000"}))
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            refused = read_until_closed(extra, 5)
        assert status_of(refused) == 503 and b"40 connections open, each busy with a request" in refused
    finally:
        for s in stalled + busy:
            s.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.base}/v2/health/live", timeout=5).status_code == 200


def test_keep_alive_pipelining_continue_and_chunked_bodies(server):
    live = request_bytes("GET", "/v2/health/live")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(live + request_bytes("GET", "/v2") + live)  # three pipelined requests
        received = b""
        deadline = time.monotonic() + 5
        while received.count(b"HTTP/1.1 200 OK") < 3 and time.monotonic() < deadline:
            received += s.recv(65536)
        assert received.count(b"HTTP/1.1 200 OK") == 3 and b'"name": "partc"' in received
    body = v2_body([0.5] * 64)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(request_bytes("POST", "/v2/models/d01/infer", headers={"content-length": str(len(body)),
                                                                         "expect": "100-continue"}))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        assert s.recv(20).startswith(b"HTTP/1.1 200")

    def chunks(count: int):
        yield b'{"inputs": [{"name": "digit", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": ['
        yield b", ".join([b"0.5"] * count)
        yield b"]}]}"

    assert httpx.post(f"{server.base}/v2/models/d01/infer", content=chunks(64), timeout=10).status_code == 200
    assert httpx.post(f"{server.base}/v2/models/d01/infer", content=chunks(10_000), timeout=10).status_code == 413


def test_metrics_count_requests_batches_and_latencies(server):
    before = httpx.get(f"{server.base}/metrics", timeout=5).text
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for rows in (1, 3):
            assert client.post("/v2/models/d89/infer", content=v2_body([0.5] * 64 * rows, (rows, 1, 8, 8))).status_code == 200
        assert client.post("/v2/models/d89/infer", content=v2_body([0.5] * 60)).status_code == 400
        assert client.post("/v2/models/nobody/infer", content=b"{}").status_code == 404
        reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.text

    def value(line: str, source: str) -> float:
        found = [row for row in source.splitlines() if row.startswith(line + " ")]
        return float(found[0].split()[-1]) if found else 0.0

    grew = lambda line: value(line, text) - value(line, before)  # noqa: E731
    assert grew('partc_requests_total{endpoint="infer",model="d89",status="200"}') == 2
    assert grew('partc_requests_total{endpoint="infer",model="d89",status="400"}') == 1
    assert grew('partc_requests_total{endpoint="infer",model="",status="404"}') == 1  # never a client's made-up name
    assert grew('partc_inferences_total{model="d89"}') == 4
    assert grew('partc_executions_total{model="d89"}') == 2
    assert grew('partc_batch_size_bucket{le="2.0",model="d89"}') == 1 and grew('partc_batch_size_sum{model="d89"}') == 4
    for histogram in ("partc_queue_seconds", "partc_compute_seconds"):
        assert grew(f'{histogram}_count{{model="d89"}}') == 2
    assert 'partc_request_seconds_bucket{endpoint="infer"' in text and "partc_open_connections" in text
    assert "nobody" not in text


def test_concurrent_requests_are_answered_right_by_a_process_without_torch(server, digits):
    """64 requests in flight at once over five models, each answered with its own rows; torch never loaded."""
    raw = np.random.default_rng(3).random((64, 1, 8, 8), dtype=np.float32)
    tasks = ["d01", "d23", "d45", "d67", "d89"]
    expected = {t: expected_logits(digits[1] / f"{t}.onnx", raw) for t in tasks}

    def call(i: int) -> np.ndarray:
        reply = httpx.post(f"{server.base}/v2/models/{tasks[i % 5]}/infer", content=v2_body(raw[i].ravel().tolist()),
                           timeout=30)
        assert reply.status_code == 200, reply.text
        return np.array(reply.json()["outputs"][0]["data"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for i, logits in enumerate(pool.map(call, range(64))):
            np.testing.assert_allclose(logits, expected[tasks[i % 5]][i], rtol=1e-5, atol=1e-6)
    maps = Path(f"/proc/{server.proc.pid}/maps")
    if maps.exists():
        loaded = maps.read_text()
        assert "onnxruntime" in loaded and "libtorch" not in loaded
    assert server.proc.poll() is None


def test_the_first_api_still_answers(server, digits):
    raw, _ = digit_samples(3)
    with httpx.Client(base_url=server.base, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok", "tasks": 5}
        tasks = client.get("/tasks").json()["tasks"]
        assert sorted(tasks) == ["d01", "d23", "d45", "d67", "d89"]
        assert tasks["d23"]["labels"] == ["2", "3"] and tasks["d23"]["input"] == {"name": "digit", "shape": [1, 8, 8],
                                                                                   "dtype": "float32"}
        assert client.get("/tasks/d67").json() == tasks["d67"]
        reply = client.post("/tasks/d01/predict", json={"inputs": raw.tolist(), "top": 1, "logits": True})
        assert reply.status_code == 200
        expected = expected_logits(digits[1] / "d01.onnx", raw)
        predictions = reply.json()["predictions"]
        np.testing.assert_allclose([p["logits"] for p in predictions], expected, rtol=1e-5, atol=1e-6)
        assert [p["top"][0]["label"] for p in predictions] == [["0", "1"][i] for i in expected.argmax(1)]
        assert client.post("/tasks/nope/predict", json={"inputs": raw.tolist()}).status_code == 404


# ---- the pieces, in process ----

def test_the_json_reader_bounds_depth_digits_and_values():
    assert nesting_depth(b'[[1], {"a": [2]}]') == 3
    assert nesting_depth(b'["[[[[", "\\"[[[", "\\\\", [1]]') == 2  # brackets in strings, escaped quotes, backslashes
    assert nesting_depth(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)) == MAX_DEPTH + 1
    nested = json.dumps({"data": np.zeros((64, 1, 8, 8)).tolist(), "id": "]]]]"}).encode()  # > 256 brackets: numpy
    assert nesting_depth(nested) == 5
    rng = random.Random(0)
    for _ in range(500):  # the loop (small bodies) and numpy (large ones) agree on any soup of brackets and quotes
        structure = bytes(rng.choice(b'[]{}"') for _ in range(rng.randint(0, 600)))
        assert _depth_loop(structure) == _depth_numpy(structure), structure
    assert loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    for body, status in [(b"[" * 40 + b"]" * 40, 400), (b"[" + b"9" * 101 + b"]", 422), (b"[Infinity]", 400),
                         (b"[1e400]", None), (b"{", 400), (b"\xff", 400)]:
        if status is None:
            assert loads(body) == [float("inf")]  # left for the reader of the value to refuse as out of range
            continue
        with pytest.raises(RequestError) as caught:
            loads(body)
        assert caught.value.status == status
    reader = BodyReader(10)
    reader.feed(b"[1, 2, [3, ")
    with pytest.raises(RequestError, match="more than 10 JSON values"):
        reader.feed(b"4, 5, 6, 7, 8, 9]")
    binary = BodyReader(3, json_bytes=4)
    binary.feed(b"[1,2")
    binary.feed(b",,,,,,,,")  # after the JSON part: tensor bytes, not counted
    assert binary.body() == b"[1,2,,,,,,,," and binary.size == 12
    uncounted = BodyReader(None)
    uncounted.feed(b",,,," * 1000)
    assert uncounted.size == 4000


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
                    max_leaves=40)
TENSOR = st.fixed_dictionaries({}, optional={"name": st.sampled_from(["digit", "x"]) | JSON,
                                             "shape": st.lists(st.integers(-2, 70), max_size=5) | JSON,
                                             "datatype": st.sampled_from(["FP32", "FP16"]) | JSON,
                                             "data": st.lists(st.floats(-2, 2), max_size=70) | JSON,
                                             "parameters": JSON})
REQUEST = st.fixed_dictionaries({}, optional={"inputs": st.lists(TENSOR, max_size=2) | JSON, "outputs": JSON,
                                              "parameters": JSON, "id": JSON}) | JSON


@pytest.fixture(scope="module")
def d01(digits):
    return load_models(digits[1])["d01"]


@settings(max_examples=150, deadline=None)
@given(payload=REQUEST)
def test_any_json_body_is_answered_or_refused_never_a_crash(d01, payload):
    """Whatever JSON arrives, parsing gives a request or a RequestError with a 4xx: the class of the 500s is gone."""
    body = json.dumps(payload).encode()
    for parse in (lambda: v2.parse_infer(d01, body, None), lambda: legacy.parse_predict(d01, body)):
        try:
            parse()
        except RequestError as e:
            assert 400 <= e.status < 500 and e.message


def test_client_warnings_are_rate_limited(caplog):
    """A flood of stalled or vanishing clients gives a burst of lines, then one line counting the rest."""
    from partc.serve.transport import ClientLog

    client_log = ClientLog(burst=3, window=60)
    with caplog.at_level("WARNING", logger="partc.serve"):
        for i in range(10):
            client_log.warning("client %d went away", i)
        client_log.started -= 60  # the window has passed
        client_log.warning("client %d went away", 10)
    assert [r.getMessage() for r in caplog.records] == [
        "client 0 went away", "client 1 went away", "client 2 went away",
        "7 more client warnings in the last 60 s were not logged", "client 10 went away"]


def test_the_batcher_coalesces_queued_requests_into_one_call(digits):
    """Requests queued while the model is busy share one ONNX Runtime call; each gets exactly its rows."""
    model = load_models(digits[1])["d67"]
    rng = np.random.default_rng(5)
    requests = [model.normalise(rng.random((rows, 1, 8, 8), dtype=np.float32)) for rows in [1, 3, 2, 1, 5, 1, 2, 1]]

    def run(**options) -> tuple[list, str]:
        metrics = ServeMetrics(64, lambda: 0)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            batcher = Batcher(model, pool, metrics, **options)

            async def all_at_once():
                return await asyncio.gather(*(batcher.infer(x) for x in requests))

            results = asyncio.run(all_at_once())
        return results, metrics.render().decode()

    for options, executions in [({}, 1), ({"max_batch": 6}, 3), ({"batching": False}, 8)]:
        results, text = run(**options)
        assert f'partc_executions_total{{model="d67"}} {float(executions)}' in text, options
        assert 'partc_inferences_total{model="d67"} 16.0' in text
        for x, result in zip(requests, results):
            np.testing.assert_allclose(result["logits"], model.run_graph(x)["logits"], rtol=1e-5, atol=1e-6)
    with pytest.raises(RequestError, match="requests waiting") as caught:
        run(max_queue=4)
    assert caught.value.status == 503


def test_a_quick_call_for_a_lone_request_runs_on_the_event_loop(digits, monkeypatch):
    """A thread hop costs more than a small model's batch-1 call: alone and quick, it runs on the loop thread."""
    model = load_models(digits[1])["d01"]
    x = model.normalise(np.full((1, 1, 8, 8), 0.5, np.float32))
    threads = []
    run_graph = LoadedModel.run_graph  # the real method, watched
    monkeypatch.setattr(LoadedModel, "run_graph", lambda self, x: threads.append(threading.current_thread()) or
                        run_graph(self, x))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        batcher = Batcher(model, pool, ServeMetrics(64, lambda: 0))

        async def calls():
            await batcher.infer(x, alone=True)  # no estimate yet: to the pool, and measured
            assert batcher.seconds_per_row is not None
            batcher.seconds_per_row = 1e-6  # what a fast machine measures
            await batcher.infer(x, alone=True)
            await batcher.infer(x, alone=False)  # other requests in flight: to the pool, so that they can batch
            batcher.seconds_per_row = 1.0  # a slow model: never on the loop
            await batcher.infer(x, alone=True)

        asyncio.run(calls())
    main_thread = threading.main_thread()
    assert [t is main_thread for t in threads] == [False, True, False, False]


# ---- a fused file behind a token; SIGTERM ----

def test_a_fused_file_behind_a_token_and_sigterm_with_a_stalled_client(tmp_path):
    from tests.test_metadata import SHAPE, build, fused_info

    models = tmp_path / "models"
    models.mkdir()
    weights = build(models / "toy.onnx", fused_info().to_metadata(), {"a": 2, "b": 3})
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-test\n")
    token.chmod(0o600)
    raw = np.random.default_rng(2).random((2, *SHAPE), dtype=np.float32)
    with running_server(models, tmp_path / "server.log", "--token-file", str(token), "--shutdown-grace", "1") as server:
        with httpx.Client(base_url=server.base, timeout=30) as client:
            assert client.get("/v2/health/live").status_code == 200  # probes need no token
            assert client.get("/v2/health/ready").status_code == 200
            for path in ("/v2/models/toy", "/metrics", "/v2"):
                reply = client.get(path)
                assert reply.status_code == 401 and reply.headers["www-authenticate"].startswith("Bearer")
            assert client.get("/v2", headers={"authorization": "Bearer wrong"}).status_code == 401
            client.headers["authorization"] = "Bearer s3cret-token-for-the-test"
            meta = client.get("/v2/models/toy").json()
            assert [o["name"] for o in meta["outputs"]] == ["a", "a.top_k", "b", "b.top_k"]
            assert meta["partc"]["kind"] == "fused" and meta["partc"]["normalization"] == "in_graph"
            body = v2_body(raw.ravel().tolist(), raw.shape, name="image", parameters={"top_k": 1})
            outputs = {o["name"]: o for o in client.post("/v2/models/toy/infer", content=body).json()["outputs"]}
            for task, classes in (("a", 2), ("b", 3)):  # raw input in: the file normalises in its graph
                logits = np.reshape(outputs[task]["data"], (2, classes))
                np.testing.assert_allclose(logits, raw.reshape(2, -1) @ weights[task], rtol=1e-5, atol=1e-5)
                assert [s.split(":")[1] for s in outputs[f"{task}.top_k"]["data"]] == [str(i) for i in logits.argmax(1)]
            refused = client.post("/v2/models/toy/infer", content=v2_body(raw.ravel().tolist(), raw.shape, name="image",
                                                                            parameters={"normalized": True}))
            assert refused.status_code == 400 and "normalises in its graph" in refused.json()["error"]
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.sendall(request_bytes("POST", "/v2/models/toy/infer", b"[0.5,", {
            "content-length": "5000", "authorization": "Bearer s3cret-token-for-the-test"}))
        time.sleep(0.2)
        try:
            seconds = server.stop()
        finally:
            stalled.close()
        assert server.proc.returncode == 0 and seconds < 4, (seconds, server.log())
        assert "shutting down" in server.log() and "dropped client" in server.log()


# ---- start-up ----

def test_serve_flags_and_bad_models_are_user_errors(digits, tmp_path, capsys):
    from tests.test_metadata import build, task_info

    folder = str(digits[1])
    (tmp_path / "empty_token").write_text("  \n")
    cases = [
        (["--port", "70000"], "expected at most 65535"),
        (["--max-body", "-1"], "expected at least 1024"),
        (["--threads", "-1"], "expected at least 1"),
        (["--threads", "2000"], "expected at most"),
        (["--max-queue-delay", "nan"], "expected a number from 0 to 1000"),
        (["--max-connections", "0"], "expected at least 1"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as caught:
            main(["serve", folder, *argv])
        assert caught.value.code == 2 and message in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    props = task_info().to_metadata()
    build(bad / "t.onnx", {**props, "std": "[0.0, 1.0]"}, {"logits": 2})
    for argv, message in [([folder, "--max-body", "4096", "--max-buffered", "2048"], "is below --max-body"),
                          ([folder, "--token-file", str(tmp_path / "empty_token")], "must hold one token"),
                          ([folder, "--token-file", str(tmp_path / "missing")], "cannot read the token file"),
                          ([str(bad)], "std [0.0, 1.0] has a value <= 0")]:
        assert main(["serve", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert bind_warning("127.0.0.1", False) is None and bind_warning("::1", False) is None
    assert "reachable from other machines, with no authentication" in bind_warning("0.0.0.0", False)
    assert "bearer token (--token-file) over plain HTTP" in bind_warning("10.1.2.3", True)


def test_serve_on_a_busy_port_is_a_user_error(digits, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(digits[1]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


NO_TORCH = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed here")
sys.meta_path.insert(0, Refuse())
"""


def test_serving_code_runs_without_torch(digits, mixed):
    """The app, transport and models with torch unimportable: every exported task answers v2 requests."""
    script = NO_TORCH.format(blocked={"torch"}) + textwrap.dedent(f"""
        import asyncio, json, socket, numpy as np, httpx
        import partc.serve.cli, partc.serve.inputs
        from partc.serve.app import PartcApp
        from partc.serve.models import load_models
        from partc.serve.transport import Limits, Server

        async def main():
            out = {{}}
            for folder in [{str(digits[1])!r}, {str(mixed[1])!r}]:
                models = load_models(folder)
                app = PartcApp(models)
                server = Server(app, Limits())
                app.server = server
                listener = await asyncio.get_running_loop().create_server(server.protocol, "127.0.0.1", 0)
                port = listener.sockets[0].getsockname()[1]
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{{port}}", timeout=30) as client:
                    for name, model in models.items():
                        x = np.random.rand(2, *model.info.input_shape)
                        body = {{"inputs": [{{"name": model.info.input_name, "shape": list(x.shape), "datatype": "FP32",
                                              "data": x.ravel().tolist()}}], "parameters": {{"top_k": 1}}}}
                        reply = await client.post(f"/v2/models/{{name}}/infer", json=body)
                        assert reply.status_code == 200, reply.text
                        out[name] = reply.json()["outputs"][1]["data"][0].split(":")[2]
                await server.shutdown(listener)
                app.close()
            return out

        out = asyncio.run(main())
        assert "torch" not in sys.modules
        print(json.dumps(out))
    """)
    proc = _run_python(script)
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
    proc = _run_python(script)
    assert proc.returncode == 0, proc.stderr
    logits = json.loads(proc.stdout)
    for r in digits[2] + mixed[2]:
        model = load_task(r.path, r.task)
        raw = np.linspace(0, 1, 2 * int(np.prod(r.info.input_shape)), dtype=np.float32).reshape(2, *r.info.input_shape)
        np.testing.assert_allclose(logits[r.task], model.predict(raw), atol=1e-6)


def _run_python(script: str):
    import subprocess
    import sys

    from tests.export_helpers import ROOT

    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_registering_the_commands_imports_no_heavy_library():
    """`partc check` and friends must not pay for torch, onnx, ONNX Runtime or the server's libraries at start-up."""
    script = ("import argparse, sys, partc.export.cli, partc.serve.cli\n"
              "sub = argparse.ArgumentParser().add_subparsers()\n"
              "partc.export.cli.register(sub); partc.serve.cli.register(sub)\n"
              "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'h11', 'prometheus_client', 'numpy') "
              "if m in sys.modules))")
    proc = _run_python(script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
