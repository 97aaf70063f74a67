"""Real `partc serve` processes for the tests, on loopback only, always stopped; raw HTTP for hostile clients."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.export_helpers import ROOT


@dataclass
class RunningServer:
    base: str  # http://127.0.0.1:PORT
    port: int
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> float:
        """Send `sig` and wait for the exit; the seconds it took (the process is killed after `timeout`)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - start


@contextlib.contextmanager
def running_server(model_dir: Path, log_path: Path, *options: str, startup: float = 60.0):
    """`partc serve model_dir --port 0 *options` on 127.0.0.1, until it answers /v2/health/live."""
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "partc", "serve", str(model_dir), "--host", "127.0.0.1",
                             "--port", "0", *options], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    server = None
    try:
        deadline = time.monotonic() + startup
        while server is None:
            assert proc.poll() is None, log_path.read_text()
            found = re.search(r"http://127\.0\.0\.1:(\d+)", log_path.read_text())
            if found:
                candidate = RunningServer(found.group(0), int(found.group(1)), proc, log_path)
                try:
                    if httpx.get(f"{candidate.base}/v2/health/live", timeout=1).status_code == 200:
                        server = candidate
                except httpx.TransportError:
                    pass
            assert time.monotonic() < deadline, "server did not come up: " + log_path.read_text()
            if server is None:
                time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all
        return read_until_closed(sock, timeout)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            part = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not part:
            break
        received += part
    return received


def status_of(response: bytes) -> int:
    """The status code of the first response in raw bytes (0 when there is none)."""
    found = re.match(rb"HTTP/1\.1 (\d{3})", response)
    return int(found.group(1)) if found else 0


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A raw HTTP/1.1 request; Content-Length is the body's unless `headers` says otherwise (a body to come)."""
    headers = {"content-length": str(len(body)), **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
