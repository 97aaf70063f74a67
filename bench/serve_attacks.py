"""The hostile and heavy clients of issue 14, re-run against `partc serve` and `partc predict`: what each gets now.

    python3 bench/serve_attacks.py

Exports split_digits/d01 of a briefly trained run (tests/export_helpers.py:
a few real Adam steps, so BatchNorm statistics and normalisation are real), starts real
servers on 127.0.0.1 (one with default limits; one with --header-timeout 2
--body-timeout 3 for the stalling clients, so the run takes seconds, not
minutes), throws each attack at them and prints a table: the attack, what
main did (from the issue) and what happens now, measured. Also the bad
model files, `partc predict` on hostile files, and the flag checks.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from struct import pack

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MiB = 1024 * 1024
ROWS: list[tuple[str, str, str]] = []


def row(attack: str, before: str, now: str) -> None:
    ROWS.append((attack, before, now))
    print(f"  {attack}: {now}", flush=True)


class Server:
    def __init__(self, model_dir: Path, log: Path, *options: str):
        self.log_path = log
        self.proc = subprocess.Popen([sys.executable, "-m", "partc", "serve", str(model_dir), "--port", "0", *options],
                                     cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"http://127\.0\.0\.1:(\d+)", log.read_text())
            if found:
                self.port = int(found.group(1))
                return
            time.sleep(0.1)
        raise SystemExit("server did not start: " + log.read_text())

    def log(self) -> str:
        return self.log_path.read_text()

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024

    def stop(self) -> tuple[float, int]:
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - start, self.proc.returncode


def exchange(port: int, data: bytes, timeout: float = 60.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        received = b""
        while True:
            try:
                part = s.recv(65536)
            except OSError:
                break
            if not part:
                break
            received += part
        return received


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    """A raw request that asks the server to close the connection after answering (`exchange` reads until then)."""
    headers = {"content-length": str(len(body)), "connection": "close",
               **{k.replace("_", "-"): v for k, v in headers.items()}}
    return (f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n" +
            "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body


def status(response: bytes) -> str:
    found = re.match(rb"HTTP/1\.1 (\d{3})", response)
    if not found:
        return "no response"
    error = re.search(rb'"error": "((?:[^"\\]|\\.)*)"', response)
    return f"{found.group(1).decode()}" + (f" ({error.group(1).decode()[:90]})" if error else "")


def live_latencies(port: int, stop: threading.Event, out: list[float]) -> None:
    """Probe /v2/health/live every 20 ms on one keep-alive connection, recording each answer's latency."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        while not stop.is_set():
            start = time.perf_counter()
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply:
                part = s.recv(4096)
                if not part:
                    raise SystemExit("the server closed the probe's connection")
                reply += part
            out.append(time.perf_counter() - start)
            time.sleep(0.02)


def v2(data_text: str, shape: str = "[1, 1, 8, 8]", extra: str = "") -> bytes:
    return (f'{{"inputs": [{{"name": "digit", "shape": {shape}, "datatype": "FP32", "data": {data_text}}}]{extra}}}'
            ).encode()


def http_attacks(model_dir: Path, tmp: Path) -> None:
    server = Server(model_dir, tmp / "defaults.log")
    port = server.port
    infer, legacy = "/v2/models/d01/infer", "/tasks/d01/predict"
    junk = b"[" + b"[]," * ((16 * MiB - 2) // 3)
    junk += b"]" * (16 * MiB - len(junk))

    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=live_latencies, args=(port, stop, latencies))
    prober.start()
    start = time.perf_counter()
    reply = exchange(port, request("POST", infer, junk))
    one = time.perf_counter() - start
    time.sleep(0.2)
    stop.set()
    prober.join()
    row("one 16 MiB body of `[],`", "froze every other client ~6.6 s",
        f"{status(reply)[:3]} after {one:.2f} s (refused at its first chunk); /v2/health/live max {max(latencies) * 1e3:.0f} ms")

    latencies.clear()
    stop.clear()
    prober = threading.Thread(target=live_latencies, args=(port, stop, latencies))
    prober.start()
    start = time.perf_counter()
    string = b'{"id": "' + b"a" * (16 * MiB - 10) + b'"}'
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda body: exchange(port, request("POST", infer, body)), [junk, string] * 8))
    wall = time.perf_counter() - start
    stop.set()
    prober.join()
    codes = sorted({status(r)[:3] for r in replies})
    row("16 such 16 MiB bodies at once (8 `[],`, 8 one 16 MiB string)", "froze /health ~60 s, process to 1 GB",
        f"all answered in {wall:.1f} s ({'/'.join(codes)}); /v2/health/live max {max(latencies) * 1e3:.0f} ms over "
        f"{len(latencies)} probes; server peak RSS {server.peak_rss_mb():.0f} MB")

    cases = [
        ("`[` x 2000 (deep nesting)", "500 RecursionError + 55-line traceback", infer, b"[" * 2000),
        ("a 5001-digit integer in the data", "500 + traceback", infer, v2("[" + "1" * 5001 + "]")),
        ("a 5001-digit integer as `top` (first API)", "500 + traceback", legacy,
         ('{"inputs": [[[[0.5]]]], "top": ' + "9" * 5001 + "}").encode()),
        ("`1e400` as an integer (`top`, first API)", "500 + traceback", legacy,
         b'{"inputs": [[[[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]]]], "top": 1e400}'),
        ("`1e400` as an integer (a v2 shape entry)", "(no v2 API)", infer, v2("[0.5]", "[1e400, 1, 8, 8]")),
        ("`1e400` in the data", "500", infer, v2("[" + "0.5, " * 63 + "1e400]")),
        ("1e38 in one cell (finite)", "500 'Out of range float values' (trained model)", infer,
         v2("[" + "0.5, " * 63 + "1e38]")),
        ("3e38 in every cell (finite, overflows in the network)", "500 'Out of range float values'", infer,
         v2("[" + ", ".join(["3e38"] * 64) + "]")),
        ("NaN in the data", "422", infer, v2("[" + "0.5, " * 63 + "NaN]")),
        ("Content-Length 99,999,999", "413", infer, None),
        ("gzip-encoded body", "(decoded? no: 400)", infer, "gzip"),
    ]
    for attack, before, path, body in cases:
        if body is None:
            reply = exchange(port, request("POST", path, content_length="99999999"))
        elif body == "gzip":
            reply = exchange(port, request("POST", path, zlib.compress(v2("[" + "0.5, " * 63 + "0.5]")),
                                           content_encoding="gzip"))
        else:
            reply = exchange(port, request("POST", path, body))
        row(attack, before, status(reply))

    before_lines = len(server.log().splitlines())
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(request("POST", infer, b"[0.5, " * 1000, content_length="1000000"))
            time.sleep(0.1)
    time.sleep(0.5)
    new = server.log().splitlines()[before_lines:]
    row("3 clients disconnecting mid-body", "43-line traceback each",
        f"{len(new)} log line(s), {sum('Traceback' in line for line in new)} traceback(s): "
        f"'{new[0][:90] if new else ''}...'")

    sockets = []
    for _ in range(2000):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v2 HTTP/1.1\r\n")
        sockets.append(s)
    time.sleep(1.0)
    held = closed = refused = 0
    for s in sockets:
        s.setblocking(False)
        try:
            data = s.recv(100)
            refused += data.startswith(b"HTTP/1.1 503")
            closed += data == b""
        except BlockingIOError:
            held += 1
        except OSError:
            closed += 1
    start = time.perf_counter()
    live = status(exchange(port, request("GET", "/v2/health/live")))
    live_ms = (time.perf_counter() - start) * 1e3
    for s in sockets:
        s.close()
    row("2,000 stalled connections", "all 2,000 held",
        f"{held} held (--max-connections 256 default), {closed} closed to make room for newer ones, {refused} got "
        f"503; a new client gets /v2/health/live {live[:3]} in {live_ms:.0f} ms")
    reply = exchange(port, request("GET", "/tasks"))
    row("/tasks returns absolute file paths", "yes",
        "no paths" if str(model_dir) not in reply.decode("latin-1") and ".onnx" not in reply.decode("latin-1") else "PATHS")
    server.stop()

    token = tmp / "token"
    token.write_text("attack-test-token-0123456789\n")
    token.chmod(0o600)
    server = Server(model_dir, tmp / "short.log", "--header-timeout", "2", "--body-timeout", "3",
                    "--shutdown-grace", "2", "--token-file", str(token))
    port = server.port
    start = time.perf_counter()
    reply = exchange(port, b"GET /v2 HTTP/1.1\r\nhost: x\r\n")
    row("headers that never complete", "held forever",
        f"{status(reply)} after {time.perf_counter() - start:.1f} s (--header-timeout 2 here; default 10)")
    start = time.perf_counter()
    reply = exchange(port, request("POST", infer, b"[0.5,", content_length="5000",
                                   authorization="Bearer attack-test-token-0123456789"))
    row("a body that never completes", "held forever",
        f"{status(reply)} after {time.perf_counter() - start:.1f} s (--body-timeout 3 here; default 30)")
    row("no authentication", "none", f"with --token-file: without the token {status(exchange(port, request('GET', '/v2')))}; "
        f"/v2/health/live {status(exchange(port, request('GET', '/v2/health/live')))[:3]} (probes exempt)")
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(request("POST", infer, b"[0.5,", content_length="5000",
                            authorization="Bearer attack-test-token-0123456789"))
    time.sleep(0.3)
    seconds, code = server.stop()
    stalled.close()
    row("SIGTERM while a client stalls mid-body", "did not stop",
        f"exit {code} after {seconds:.1f} s (--shutdown-grace 2 here; default 5)")


def bad_models(tmp: Path) -> None:
    from tests.test_metadata import build, task_info

    props = task_info().to_metadata()
    from onnx import TensorProto

    cases = [
        ("metadata: a wrong input name", props, {"input_name": "pixels"}, {"logits": 2}),
        ("metadata: a wrong input shape", props, {"input_shape": ("batch", 2, 4, 1)}, {"logits": 2}),
        ("metadata: a float16 input", props, {"input_type": TensorProto.FLOAT16}, {"logits": 2}),
        ("metadata: fewer labels than logits", {**props, "labels": '["no"]'}, {}, {"logits": 2}),
        ("metadata: NaN std", {**props, "std": "[NaN, 1.0]"}, {}, {"logits": 2}),
        ("metadata: zero std", {**props, "std": "[0.0, 1.0]"}, {}, {"logits": 2}),
        ("metadata: max_batch 0", {**props, "max_batch": "0"}, {}, {"logits": 2}),
    ]
    for i, (attack, meta, graph, outputs) in enumerate(cases):
        folder = tmp / f"bad{i}"
        folder.mkdir()
        build(folder / "t.onnx", meta, outputs, **graph)
        proc = subprocess.run([sys.executable, "-m", "partc", "serve", str(folder), "--port", "0"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        message = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else ""
        row(attack, "loaded, then 500 on every request",
            f"refused at start-up, exit {proc.returncode}: {message.split(': ', 1)[-1][:110]}")


def predict_attacks(model_dir: Path, tmp: Path) -> None:
    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 1, 8, 8)})
    (tmp / "liar.npy").write_bytes(header.getvalue() + bytes(1024 - len(header.getvalue())))
    np.save(tmp / "many.npy", np.random.default_rng(0).random((100_000, 1, 8, 8), dtype=np.float32))
    (tmp / "random.npy").write_bytes(os.urandom(1024))
    levels = np.array([[0, 16384], [32768, 65535]], np.uint16).repeat(4, 0).repeat(4, 1)
    raw = b"".join(b"\0" + levels[y].astype(">u2").tobytes() for y in range(8))
    chunk = lambda tag, data: pack(">I", len(data)) + tag + data + pack(">I", zlib.crc32(tag + data))  # noqa: E731
    (tmp / "grey16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", pack(">IIBBBBB", 8, 8, 16, 0, 0, 0, 0)) +
                                     chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    np.save(tmp / "over.npy", np.full((2, 1, 8, 8), 3e38, np.float32))

    def predict(*argv: str) -> tuple[subprocess.CompletedProcess, float, float]:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "partc", "predict", str(model_dir),
                               "--task", "d01", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
        peak = int(proc.stderr.strip().splitlines()[-1]) / 1024
        return proc, time.perf_counter() - start, peak

    proc, _, _ = predict(str(tmp / "liar.npy"))
    row("predict: 1 KB .npy whose header claims 10^9 rows", "MemoryError + traceback",
        f"exit {proc.returncode}: {proc.stderr.splitlines()[0][7:120]}...")
    proc, seconds, peak = predict(str(tmp / "many.npy"), "--json", "--top", "1")
    predictions = len(json.loads(proc.stdout)["predictions"]) if proc.returncode == 0 else 0
    row("predict: a 100,000-row .npy", "one batch, 3.6 GB",
        f"exit {proc.returncode}, {predictions:,} predictions in chunks of 64, {seconds:.1f} s, peak RSS {peak:.0f} MB")
    from partc.serve.inputs import read_input

    x = read_input(tmp / "grey16.png", (1, 8, 8))[0, 0]
    row("predict: 16-bit PNG", "clipped to white",
        f"read as {x[1, 1]:.2f} / {x[1, 6]:.2f} / {x[6, 1]:.2f} / {x[6, 6]:.2f} (written 0, 0.25, 0.5, 1.0)")
    proc, _, _ = predict(str(tmp / "random.npy"))
    row("predict: random bytes named .npy", "numpy's advice to use allow_pickle",
        f"exit {proc.returncode}: {proc.stderr.splitlines()[0][7:110]}")
    proc, _, _ = predict(str(tmp / "over.npy"), "--json")
    try:
        json.loads(proc.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        valid = "valid JSON, no NaN"
    except ValueError:
        valid = "INVALID JSON"
    row("predict --json on inputs that overflow", "bare NaN (invalid JSON)",
        f"{valid}, an error entry per sample, exit {proc.returncode}")


def flag_attacks(model_dir: Path) -> None:
    from partc.serve.cli import bind_warning

    for flags, before in [(["--port", "70000"], "listened on 4464"), (["--max-body", "-1"], "accepted"),
                          (["--threads", "-1"], "accepted"), (["--threads", "2000"], "hung start-up")]:
        proc = subprocess.run([sys.executable, "-m", "partc", "serve", str(model_dir), *flags], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        row(f"serve {' '.join(flags)}", before, f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:100]}")
    row("binding 0.0.0.0", "no warning", (bind_warning("0.0.0.0", False) or "none")[:110])


def main() -> None:
    from partc.export import export_tasks

    print(f"machine: {os.uname().sysname} {os.uname().machine}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from tests.export_helpers import make_trained_run

        export_tasks(make_trained_run(ROOT / "specs" / "split_digits.part", tmp / "run"), tmp / "export", tasks=["d01"])
        http_attacks(tmp / "export", tmp)
        bad_models(tmp)
        predict_attacks(tmp / "export", tmp)
        flag_attacks(tmp / "export")
    print("\n| attack | main | now |\n|---|---|---|")
    for attack, before, now in ROWS:
        print(f"| {attack} | {before} | {now.replace('|', '/')} |")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
