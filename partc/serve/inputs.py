"""Serve stage, inputs: .npy arrays and image files -> raw batches in the data stage's scale.

Convention (the same as the data stage): raw values lie in [0, 1]. The
digits source divides its 0..16 values by 16, CIFAR divides 8-bit pixels by
255; an image file here is converted to the model's channel count (L for 1
channel, RGB for 3), resized to the input's H x W (bilinear) and divided by
255, exactly as the data stage's `folder` source reads its images.
Normalisation with the metadata's mean/std happens later, in the model
wrapper. scikit-learn's digits are bright ink on a dark background; `invert`
turns a dark-on-white scan into that polarity.

A .npy file holds one sample (the input's shape) or a batch (N, *shape) of
raw values; `normalized` inputs skip the mean/std step later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from partc.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def read_input(path: str | Path, shape: tuple[int, ...], *, invert: bool = False) -> np.ndarray:
    """A float32 batch (N, *shape) from a .npy file or an image file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input '{path}' does not exist")
    if path.suffix.lower() == ".npy":
        batch = _read_npy(path, shape)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        batch = _read_image(path, shape)[None]
    else:
        raise DataError(f"input '{path}' is neither a .npy array nor an image",
                        hint=f"use .npy or one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    return 1.0 - batch if invert else batch


def _read_npy(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read '{path}' as a .npy array: {e}") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"'{path}' holds {array.dtype} values; the model takes numbers")
    if tuple(array.shape) == tuple(shape):
        array = array[None]
    elif array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != tuple(shape) or array.shape[0] == 0:
        raise DataError(f"'{path}' has shape {list(array.shape)}; the model takes one sample of shape "
                        f"{list(shape)} or a batch of shape [N, {', '.join(map(str, shape))}]")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise DataError(f"'{path}' holds NaN or infinite values")
    return array


def _read_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 3 or shape[0] not in IMAGE_MODES:
        raise DataError(f"the model's input {list(shape)} is not an image (channels, height, width with 1, 3 or 4 channels)",
                        hint="pass a .npy array instead")
    channels, height, width = shape
    try:
        with Image.open(path) as image:
            image = image.convert(IMAGE_MODES[channels]).resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image '{path}' ({type(e).__name__}: {e})") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))
