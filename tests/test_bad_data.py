"""Data a careless or hostile user feeds: each file is read correctly or refused with what was found and what
would be valid (never a traceback, never a silent wrong run)."""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import pytest
from PIL import Image

import partc
from partc.data.load import load_task_data
from partc.errors import DataError, SpecFileError


def spec(input_shape: str, data: str) -> str:
    return f"""network n {{
  input x: float[{input_shape}]
  level l1 = 2 x relu
  task a {{ data {data} path random(1) }}
}}"""


def load(tmp_path, input_shape: str, data: str):
    return load_task_data(partc.loads(spec(input_shape, data), str(tmp_path / "d.part")), "a")


def refused(tmp_path, input_shape: str, data: str) -> DataError:
    with pytest.raises(DataError) as e:
        load(tmp_path, input_shape, data)
    assert e.value.loc is not None and e.value.hint
    return e.value


LABELS = np.arange(20) % 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_samples_are_refused_with_their_count_and_first_index(tmp_path, dtype):
    x = np.random.default_rng(0).random((20, 1, 4, 4)).astype(dtype)
    x[3, 0, 2, 1], x[9, 0, 0, 0] = np.nan, np.inf
    if dtype == np.float64:
        x[11, 0, 1, 1] = 1e300  # finite, but infinite as float32
    np.savez(tmp_path / "x.npz", x=x, y=LABELS, x_test=np.ones((2, 1, 4, 4)), y_test=[0, 1])
    e = refused(tmp_path, "1, 4, 4", 'npz("x.npz", classes=2)')
    count = 3 if dtype == np.float64 else 2
    assert f"'x' holds {count} value(s) that are NaN, infinite or beyond float32's range, the first at [3, 0, 2, 1]" \
        in e.message
    assert "numpy.isfinite" in e.hint
    np.savez(tmp_path / "t.npz", x=np.ones((20, 4)), y=LABELS, x_test=np.full((2, 4), np.nan), y_test=[0, 1])
    assert "'x_test' holds 8 value(s)" in refused(tmp_path, "4", 'npz("t.npz", classes=2)').message


@pytest.mark.parametrize("content, found", [
    (b"x,y\n1,0\n2,1\n", "it holds text ('x,y'...)"),
    (b"", "is empty (0 bytes)"),
    (b"\x00\x01\x02garbage", "it holds binary data starting b'\\x00\\x01\\x02garba'"),
])
def test_a_file_that_is_no_npz_archive_is_named_for_what_it_is(tmp_path, content, found):
    (tmp_path / "data.npz").write_bytes(content)
    e = refused(tmp_path, "4", 'npz("data.npz", classes=2)')
    assert found in e.message and "Python objects" not in e.message
    assert "numpy.savez" in e.hint


def test_a_npy_file_and_object_arrays(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((3, 4)))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    assert "is a single .npy array, not an .npz archive" in refused(tmp_path, "4", 'npz("one.npz", classes=2)').message
    np.savez(tmp_path / "obj.npz", x=np.ones((20, 4)), y=LABELS, labels=np.array([{"a": 1}, None], dtype=object))
    e = refused(tmp_path, "4", 'npz("obj.npz", classes=2)')
    assert "array 'labels' holds Python objects" in e.message


def test_grey_images_without_a_channel_axis_fill_a_one_channel_input(tmp_path):
    np.savez(tmp_path / "g.npz", x=np.random.default_rng(1).random((20, 6, 6)), y=LABELS)
    data = load(tmp_path, "1, 6, 6", 'npz("g.npz", classes=2, val=0, test=0)')
    assert tuple(data.train[0].shape) == (20, 1, 6, 6)


@pytest.mark.parametrize("sample", [(6, 6), (5, 5, 3), (2, 3, 4, 5), (7,)])
def test_every_input_a_shape_hint_suggests_is_one_check_and_loading_accept(tmp_path, sample):
    np.savez(tmp_path / "s.npz", x=np.random.default_rng(2).random((20, *sample)), y=LABELS)
    e = refused(tmp_path, "9, 9, 9", 'npz("s.npz", classes=2)')
    suggested = re.findall(r"float\[([0-9, ]+)\]", e.hint)
    assert suggested, e.hint
    for shape in suggested:
        data = load(tmp_path, shape, 'npz("s.npz", classes=2, val=0, test=0)')  # checks, and loads
        assert list(data.train[0].shape[1:]) == [int(d) for d in shape.split(",")]


def test_missing_class_names_the_classes_the_data_has(tmp_path):
    np.savez(tmp_path / "l.npz", x=np.ones((30, 4)), y=np.arange(30) % 3 + 5)
    e = refused(tmp_path, "4", 'npz("l.npz", classes=2)')
    assert "has no samples of class '0'" in e.message
    assert "the classes it has, with their sample counts: 5 (10), 6 (10), 7 (10)" in e.hint
    np.savez(tmp_path / "none.npz", x=np.ones((0, 4)), y=np.zeros(0, np.int64))
    e = refused(tmp_path, "4", 'npz("none.npz", classes=2)')
    assert "holds no samples at all" in e.message and "none;" not in e.hint


def test_a_fifo_is_refused_not_read(tmp_path):
    """A FIFO would block the reader until a writer comes (and /dev/zero never ends): refused unread."""
    os.mkfifo(tmp_path / "pipe.npz")
    os.mkfifo(tmp_path / "pipe.part")

    def unblock():  # were they opened after all, a writer that closes at once ends the read (and the test)
        for name in ("pipe.npz", "pipe.part"):
            try:
                os.close(os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # no reader: as it should be

    timer = threading.Timer(5, unblock)
    timer.start()
    try:
        assert "pipe.npz' is a FIFO (named pipe), not a file" in refused(tmp_path, "4", 'npz("pipe.npz", classes=2)').message
        with pytest.raises(SpecFileError, match=r"pipe\.part' is a FIFO \(named pipe\), not a spec file"):
            partc.load(tmp_path / "pipe.part")
    finally:
        timer.cancel()


def _images(folder, values, dtype):
    folder.mkdir(parents=True)
    for i, v in enumerate(values):
        Image.fromarray(np.full((8, 8), v, dtype=dtype)).save(folder / f"{i}.png")


def test_16_bit_images_are_scaled_by_their_range_not_clipped(tmp_path):
    _images(tmp_path / "imgs" / "deep", [40000, 65535, 0], np.uint16)
    _images(tmp_path / "imgs" / "flat", [51, 255, 0], np.uint8)
    data = load(tmp_path, "1, 8, 8", 'folder("imgs", classes=["deep", "flat"], normalize=false, val=0, test=0)')
    x, y = data.train
    means = sorted(float(x[i].mean()) for i in range(len(y)) if int(y[i]) == 0)
    assert means == pytest.approx([0.0, 40000 / 65535, 1.0], abs=1e-6)  # clipped to 255, 40000 read as 1.0
    assert sorted(float(x[i].mean()) for i in range(len(y)) if int(y[i]) == 1) == pytest.approx([0, 0.2, 1])


def test_nested_sub_folders_are_refused_not_silently_skipped(tmp_path):
    _images(tmp_path / "imgs" / "cat", [1, 2], np.uint8)
    _images(tmp_path / "imgs" / "dog" / "more", [3], np.uint8)
    e = refused(tmp_path, "1, 8, 8", 'folder("imgs", classes=["cat", "dog"])')
    assert "class folder" in e.message and "holds sub-folders (more)" in e.message
    assert "if those are the classes" in e.hint
