"""Serve stage, inputs: .npy arrays and image files -> raw batches in the data stage's scale, a chunk at a time.

Convention (the same as the data stage): raw values lie in [0, 1]. The
digits source divides its 0..16 values by 16, CIFAR divides 8-bit pixels by
255; an image file here is converted to the model's channel count (L for 1
channel, RGB for 3, RGBA for 4), resized to the input's H x W (bilinear) and
divided by its full scale: 255 for 8-bit images, 65535 for 16-bit ones
(Pillow's 8-bit conversion would clip those to white), float images as they
are. Normalisation with the metadata's mean/std happens later, in the model.
scikit-learn's digits are bright ink on a dark background; `invert` turns a
dark-on-white scan into that polarity.

A .npy file holds one sample (the input's shape) or a batch (N, *shape).
Its header is read and checked first: a file that is not .npy, holds
Python objects, or promises more bytes than it has is refused before any
array is made; the data is then memory-mapped and read `chunk` rows at a
time, so a 100,000-row file never sits in memory as float32 all at once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partc.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


@dataclass
class InputFile:
    """One input file: `rows` samples, read in chunks (raw float32, finite, inverted when asked)."""

    path: Path
    rows: int
    single: bool  # the file holds one sample, not a batch (its predictions carry no [i])
    data: np.ndarray  # (rows, *shape), any numeric dtype; memory-mapped for .npy
    invert: bool = False

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 rows) for consecutive chunks of at most `size` rows."""
        for start in range(0, self.rows, size):
            chunk = np.asarray(self.data[start:start + size], dtype=np.float32)
            finite = np.isfinite(chunk)
            if not finite.all():
                row = start + int(np.flatnonzero(~finite.reshape(len(chunk), -1).all(axis=1))[0])
                raise DataError(f"'{self.path}' holds NaN or infinite values (sample {row})")
            yield start, (1.0 - chunk if self.invert else chunk)

    def read(self) -> np.ndarray:
        """Every sample at once (for small inputs)."""
        return np.concatenate([chunk for _, chunk in self.chunks(max(1, self.rows))])


def open_input(path: str | Path, shape: tuple[int, ...], *, invert: bool = False) -> InputFile:
    """A .npy file or an image file, checked against the model's sample shape."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data, single = _open_npy(path, tuple(shape))
    elif suffix in IMAGE_SUFFIXES:
        data, single = _read_image(path, tuple(shape))[None], True
    else:
        raise DataError(f"input '{path}' is neither a .npy array nor an image",
                        hint=f"use .npy or one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    return InputFile(path, len(data), single, data, invert)


def read_input(path: str | Path, shape: tuple[int, ...], *, invert: bool = False) -> np.ndarray:
    """A float32 batch (N, *shape) from a .npy file or an image file, all at once."""
    return open_input(path, shape, invert=invert).read()


def _open_npy(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """The file's data as (rows, *shape), memory-mapped, and whether it held one sample rather than a batch."""
    file_shape, fortran, dtype, offset = _npy_header(path)
    if dtype.hasobject:
        raise DataError(f"'{path}' holds Python objects, not numbers; partc reads numeric .npy arrays only")
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"'{path}' holds {dtype} values; the model takes real numbers")
    needed = math.prod(file_shape) * dtype.itemsize
    held = path.stat().st_size - offset
    if held < needed:
        raise DataError(f"'{path}' is truncated or its header lies: it declares {dtype} {list(file_shape)}, "
                        f"{needed} bytes of data, but the file holds {held}")
    batch_shape = f"[N, {', '.join(map(str, shape))}]"
    if file_shape == shape:
        rows, single = 1, True
    elif len(file_shape) == len(shape) + 1 and file_shape[1:] == shape and file_shape[0] > 0:
        rows, single = file_shape[0], False
    else:
        raise DataError(f"'{path}' has shape {list(file_shape)}; the model takes one sample of shape "
                        f"{list(shape)} or a batch of shape {batch_shape}")
    data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=file_shape, order="F" if fortran else "C")
    return data.reshape((rows, *shape)), single


def _npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, data offset) from a .npy header, without reading the data."""
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as f:
            version = npy.read_magic(f)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            return tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype), f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise DataError(f"'{path}' is not a readable .npy file ({str(e).splitlines()[0][:120]})",
                        hint="write arrays with numpy.save") from None


def _read_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 3 or shape[0] not in IMAGE_MODES:
        raise DataError(f"the model's input {list(shape)} is not an image (channels, height, width with 1, 3 or 4 channels)",
                        hint="pass a .npy array instead")
    channels, height, width = shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                pixels = _pixels(image, channels, (width, height))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise DataError(f"cannot read image '{path}' ({type(e).__name__}: {e})") from None
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _pixels(image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W, channels) float32 in [0, 1]: 8-bit images / 255, 16-bit / 65535, float images as they are."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        if image.mode == "I" and image.format != "PNG":
            raise ValueError("32-bit integer images have no [0, 1] scale; save it with 8 or 16 bits, or as .npy")
        scale = 1.0 if image.mode == "F" else 65535.0
        grey = np.asarray(image, dtype=np.float32) / scale
        grey = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
        planes = [grey] * min(channels, 3) + [np.ones_like(grey)] * (channels == 4)
        return np.stack(planes, axis=2)
    image = image.convert(IMAGE_MODES[channels]).resize(size, Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[:, :, None] if pixels.ndim == 2 else pixels
