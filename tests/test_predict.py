"""Serve stage, `partc predict`: exported models on .npy arrays and images through ONNX Runtime.

Inputs nobody checked are part of the contract: files that are not .npy,
headers that promise more than the file holds, object arrays, 16-bit
images, batches larger than the model's max batch, inputs that overflow
inside the network. Each gets one message and exit code 2 (or a correct
answer), never a traceback, a MemoryError or NaN in JSON.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zlib
from struct import pack

import numpy as np
import pytest
from numpy.lib import format as npy
from PIL import Image

from partc.cli import main
from partc.errors import DataError
from partc.onnxrt import cuda_possible
from partc.serve.inputs import open_input, read_input
from partc.serve.models import LoadedModel, load_task
from tests.export_helpers import ROOT


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "partc", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)


def digit_samples(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (0..16) as raw inputs in [0, 1], the data stage's scale."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[:n].reshape(n, 1, 8, 8).astype(np.float32) / 16.0, digits.target[:n]


def test_predict_cli_npy_and_image_with_clean_stderr(digits, tmp_path):
    """The CLI's figures equal the model's own; no provider-load noise reaches stderr (no GPU here)."""
    _, export_dir, _ = digits
    raw, _ = digit_samples(3)
    np.save(tmp_path / "batch.npy", raw)
    np.save(tmp_path / "one.npy", raw[0])
    Image.fromarray(np.round(raw[0, 0] * 255).astype(np.uint8)).save(tmp_path / "one.png")
    proc = _run("predict", str(export_dir), "--task", "d01", str(tmp_path / "batch.npy"),
                str(tmp_path / "one.npy"), str(tmp_path / "one.png"), "--top", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = json.loads(proc.stdout)
    assert out["task"] == "d01" and out["provider"] == "CPUExecutionProvider"
    names = [p["input"] for p in out["predictions"]]
    assert names == [f"{tmp_path / 'batch.npy'}[{i}]" for i in range(3)] + [str(tmp_path / "one.npy"), str(tmp_path / "one.png")]

    model = load_task(export_dir, "d01")
    expected = model.top_k(model.predict(raw), 2)
    for got, want in zip(out["predictions"], expected):
        assert [e["label"] for e in got["top"]] == [label for label, _ in want]
        assert [e["probability"] for e in got["top"]] == pytest.approx([p for _, p in want], abs=1e-6)
    # the png holds the same digit at 8-bit precision: same prediction, same probabilities to ~1e-2
    png, one = out["predictions"][4]["top"], out["predictions"][3]["top"]
    assert [e["label"] for e in png] == [e["label"] for e in one]
    assert [e["probability"] for e in png] == pytest.approx([e["probability"] for e in one], abs=2e-2)
    assert {e["label"] for e in one} == {"0", "1"}
    assert sum(e["probability"] for e in one) == pytest.approx(1.0, abs=1e-5)


def test_a_large_npy_runs_in_chunks_of_the_max_batch(digits, tmp_path, capsys, monkeypatch):
    """150 rows through a model of max batch 64: calls of 64, 64 and 22 rows, the answers of one big call."""
    _, export_dir, _ = digits
    raw = np.random.default_rng(0).random((150, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "many.npy", raw)
    sizes = []
    predict = LoadedModel.predict  # the real method, watched
    monkeypatch.setattr(LoadedModel, "predict", lambda self, batch, **kw: sizes.append(len(batch)) or predict(self, batch, **kw))
    assert main(["predict", str(export_dir), "--task", "d23", str(tmp_path / "many.npy"), "--json", "--top", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sizes == [64, 64, 22]
    assert [p["input"] for p in out["predictions"]] == [f"{tmp_path / 'many.npy'}[{i}]" for i in range(150)]
    model = load_task(export_dir, "d23")
    labels = [model.output().labels[i] for i in predict(model, raw).argmax(axis=1)]
    assert [p["top"][0]["label"] for p in out["predictions"]] == labels


def test_predict_warns_about_inputs_outside_the_raw_scale(mixed, tmp_path, capsys):
    _, export_dir, _ = mixed
    np.save(tmp_path / "raw.npy", np.full((1, 8, 8), 16, np.float32))  # digits saved without / 16
    np.save(tmp_path / "scaled.npy", np.full((1, 8, 8), 1.0, np.float32))
    assert main(["predict", str(export_dir), "--task", "low", str(tmp_path / "raw.npy")]) == 0
    assert "has values in [16, 16]; partc expects raw values in [0, 1]" in capsys.readouterr().err
    assert main(["predict", str(export_dir), "--task", "low", str(tmp_path / "scaled.npy")]) == 0
    assert main(["predict", str(export_dir), "--task", "low", "--normalized", str(tmp_path / "raw.npy")]) == 0
    assert capsys.readouterr().err == ""


def test_inputs_that_overflow_in_the_network_are_errors_never_nan_in_json(digits, tmp_path):
    _, export_dir, _ = digits
    raw, _ = digit_samples(2)
    batch = np.concatenate([raw, np.full((1, 1, 8, 8), 3e38, np.float32)])  # finite, but not after the first conv
    np.save(tmp_path / "over.npy", batch)
    proc = _run("predict", str(export_dir), "--task", "d01", str(tmp_path / "over.npy"), "--json")
    assert proc.returncode == 2
    out = json.loads(proc.stdout, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))  # strict JSON
    assert [("top" in p, "error" in p) for p in out["predictions"]] == [(True, False), (True, False), (False, True)]
    assert "1 of 3 sample(s) gave non-finite logits" in proc.stderr and "Traceback" not in proc.stderr


def _png16(path, pixels: np.ndarray) -> None:
    """A 16-bit PNG written byte by byte (grey: colour type 0, RGB: 2)."""
    height, width = pixels.shape[:2]
    kind = 0 if pixels.ndim == 2 else 2
    raw = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(height))
    chunk = lambda tag, data: pack(">I", len(data)) + tag + data + pack(">I", zlib.crc32(tag + data))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", pack(">IIBBBBB", width, height, 16, kind, 0, 0, 0)) +
                     chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_image_inputs_follow_the_data_convention(tmp_path):
    """Pixels / full scale in [0, 1] (8 and 16 bits), converted to the channel count, resized to H x W."""
    rgb = np.zeros((20, 10, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    x = read_input(tmp_path / "red.png", (3, 16, 16))
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 5, 5], [1.0, 0.0, 0.0])
    grey = read_input(tmp_path / "red.png", (1, 8, 8))
    assert grey.shape == (1, 1, 8, 8) and 0.29 < grey[0, 0, 0, 0] < 0.31  # ITU-R 601 luma of pure red
    assert read_input(tmp_path / "red.png", (1, 8, 8), invert=True)[0, 0, 0, 0] == pytest.approx(1 - grey[0, 0, 0, 0])

    levels = np.array([[0, 16384], [32768, 65535]], np.uint16).repeat(4, 0).repeat(4, 1)  # 8 x 8, four quadrants
    _png16(tmp_path / "grey16.png", levels)
    x = read_input(tmp_path / "grey16.png", (1, 8, 8))[0, 0]
    np.testing.assert_allclose([x[1, 1], x[1, 6], x[6, 1], x[6, 6]], [0, 0.25, 0.5, 1.0], atol=1e-4)  # not clipped
    assert read_input(tmp_path / "grey16.png", (3, 8, 8))[0, :, 6, 1] == pytest.approx([0.5] * 3, abs=1e-4)
    _png16(tmp_path / "rgb16.png", np.stack([levels, levels // 2, 65535 - levels], axis=2))
    np.testing.assert_allclose(read_input(tmp_path / "rgb16.png", (3, 8, 8))[0, :, 6, 6], [1.0, 0.5, 0.0], atol=1 / 255)

    np.save(tmp_path / "s.npy", np.arange(64, dtype=np.int64).reshape(1, 8, 8))
    assert read_input(tmp_path / "s.npy", (1, 8, 8)).dtype == np.float32
    with pytest.raises(DataError, match="not an image"):
        read_input(tmp_path / "red.png", (10,))
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(DataError, match="neither a .npy array nor an image"):
        read_input(tmp_path / "x.txt", (1, 8, 8))


def _npy_with_header(path, shape, data: bytes, descr: str = "<f4") -> None:
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    path.write_bytes(header.getvalue() + data)


def test_npy_files_are_checked_before_anything_is_read(tmp_path):
    """The header is the contract: a file that is not .npy, lies about its size or holds objects is refused."""
    shape = (1, 8, 8)
    (tmp_path / "random.npy").write_bytes(np.random.default_rng(0).bytes(1000))
    _npy_with_header(tmp_path / "liar.npy", (10**9, 1, 8, 8), bytes(1000))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "complex.npy", np.zeros((1, 8, 8), np.complex64))
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 8, 8), np.float32))
    np.save(tmp_path / "nan.npy", np.full((2, 1, 8, 8), np.nan, np.float32))
    cases = {
        "random.npy": "is not a readable .npy file (the magic string is not correct",
        "liar.npy": "its header lies: it declares float32 [1000000000, 1, 8, 8], 256000000000 bytes of data, "
                    "but the file holds 1000",
        "objects.npy": "holds Python objects, not numbers",
        "complex.npy": "holds complex64 values; the model takes real numbers",
        "empty.npy": "has shape [0, 1, 8, 8]",
    }
    for name, message in cases.items():
        with pytest.raises(DataError) as caught:
            open_input(tmp_path / name, shape)
        assert message in caught.value.message and "allow_pickle" not in caught.value.message
    with pytest.raises(DataError, match=r"holds NaN or infinite values \(sample 0\)"):
        next(open_input(tmp_path / "nan.npy", shape).chunks(64))
    fortran = np.asfortranarray(np.random.default_rng(1).random((5, 1, 8, 8), dtype=np.float32))
    np.save(tmp_path / "fortran.npy", fortran)
    source = open_input(tmp_path / "fortran.npy", shape)
    assert source.rows == 5 and not source.single
    np.testing.assert_array_equal(np.concatenate([c for _, c in source.chunks(2)]), fortran)


def test_predict_cli_table_and_user_errors(mixed, tmp_path, capsys):
    _, export_dir, _ = mixed
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "photo.jpg")
    assert main(["predict", str(export_dir), "--task", "photos", str(tmp_path / "photo.jpg"), "--top", "9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'photo.jpg'}  (task photos)" and len(lines) == 4  # top capped at 3 classes
    assert re.fullmatch(r"  [012]  0\.\d{4}", lines[1])

    np.save(tmp_path / "wrong.npy", np.zeros((2, 8, 8), np.float32))
    _npy_with_header(tmp_path / "liar.npy", (10**9, 1, 8, 8), bytes(1000))
    folder, wrong = str(export_dir), str(tmp_path / "wrong.npy")
    cases = [
        ([folder, "--task", "low", wrong], "has shape [2, 8, 8]; the model takes one sample of shape [1, 8, 8]"),
        ([folder, wrong], "holds several models; choose a task with --task"),
        ([folder, "--task", "nope", wrong], "no exported task 'nope'"),
        ([folder, "--task", "low", str(tmp_path / "missing.png")], "does not exist"),
        ([folder, "--task", "low", wrong, "--top", "0"], "--top must be at least 1"),
        ([folder, "--task", "low", str(tmp_path / "liar.npy")], "its header lies"),
        ([str(tmp_path / "nowhere"), wrong], "does not exist"),
    ]
    if not cuda_possible():
        cases.append(([folder, "--task", "low", wrong, "--device", "cuda"], "CUDA provider is not usable"))
    for argv, message in cases:
        assert main(["predict", *argv]) == 2
        captured = capsys.readouterr()
        assert message in captured.err and "Traceback" not in captured.err
        assert captured.out == ""  # inputs are checked before anything is printed
