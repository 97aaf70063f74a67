"""Data stage, readers: each source's samples as plain numpy arrays (`RawData`).

A reader returns a source's samples in their natural shape and type, before
class selection, splits or normalisation (`partc.data.load` does those, the
same way for every source). Images stay uint8 with `scale` = 1/255 so a
cached data set costs a quarter of its float size; only the samples a task
selects become float32.

Relative paths in a spec are looked up in each of `bases` in turn (see
`partc.data.load.search_bases`): the first that exists wins, and when none
does the error lists every path tried. CIFAR lives in `partc.data.cifar`.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partc.data.identity import content_identities, index_identities
from partc.errors import DataError, Location, exception_text
from partc.values import special_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
NPZ_HINT = "save it with numpy.savez(FILE, x=samples, y=labels), optionally with x_test=..., y_test=..., labels=names"


@dataclass
class RawData:
    """A source's samples: x (n, ...) uint8 or float32, y (n,) int64 class ids."""

    x: np.ndarray
    y: np.ndarray
    names: list[str] | None  # class name of each id (y value), when the source has them
    x_test: np.ndarray | None = None  # the source's own test split, if it has one
    y_test: np.ndarray | None = None
    scale: float = 1.0  # x * scale is the float sample (1/255 for uint8 images)
    origin: str = ""  # where it came from, for messages
    ids: np.ndarray | None = None  # identity of each sample (uint64, `partc.data.splits`): what splits go by
    test_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.ids is None:  # a reader that knows its samples by position only
            self.ids = index_identities(self.origin or "samples", len(self.y))
        if self.y_test is not None and self.test_ids is None:
            self.test_ids = index_identities(f"{self.origin or 'samples'}/test", len(self.y_test))


def resolve_path(value: str, bases: list[Path]) -> tuple[Path | None, list[Path]]:
    """The first existing `base / value` (or `value` itself when absolute), and every path tried."""
    try:
        path = Path(value).expanduser()
    except (RuntimeError, ValueError):  # "~nobody/x": no such user
        path = Path(value)
    candidates = [path] if path.is_absolute() else [(base / path).resolve() for base in bases]
    tried: list[Path] = []
    for candidate in candidates:
        if candidate in tried:
            continue
        tried.append(candidate)
        try:
            if candidate.exists():
                return candidate, tried
        except (OSError, ValueError):  # a name too long, a NUL byte: no such file, for the message below
            continue
    return None, tried


def missing_path_error(what: str, value: str, tried: list[Path], loc: Location | None, hint: str) -> DataError:
    looked = ", ".join(str(p) for p in tried)
    return DataError(f"{what} '{value}' not found (looked for {looked})", loc, hint)


# ---- digits -------------------------------------------------------------------------------------

def read_digits() -> RawData:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16), scaled to [0, 1].

    The file is read straight from the installed package: importing sklearn.datasets (and with it
    scipy and pandas) would cost a training process 1-2 s and about 75 MiB for one 300 KB table.
    """
    images, target = _digits_table()
    x = (images / 16.0).astype(np.float32)[:, None, :, :]
    return RawData(x=x, y=target.astype(np.int64), names=[str(i) for i in range(10)], origin="sklearn digits",
                   ids=index_identities("digits", len(x)))


def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float64, target (1797,)) as `sklearn.datasets.load_digits` returns them."""
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")  # locates the package without importing it
    table = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if table is None or not table.is_file():  # an unusual layout: let scikit-learn find its file
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    with gzip.open(table, "rt", encoding="ascii") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


# ---- npz ----------------------------------------------------------------------------------------

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an empty one ends in the second)
_NPY_MAGIC = b"\x93NUMPY"


def read_npz(file_arg: str, bases: list[Path], loc: Location | None) -> RawData:
    """Arrays x, y (and optionally x_test, y_test, labels) from a .npz file; uint8 x is scaled by 1/255."""
    path, tried = resolve_path(file_arg, bases)
    if path is None:
        raise missing_path_error("npz file", file_arg, tried, loc, NPZ_HINT)
    _check_npz_kind(path, loc)
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    raise DataError(f"npz file '{path}': array '{key}' holds Python objects, which partc does not "
                                    "unpickle", loc, "store numeric arrays (and labels as a string array)") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"npz file '{path}' is damaged ({exception_text(e, 160)})", loc, NPZ_HINT) from None
    if not arrays:
        raise DataError(f"npz file '{path}' holds no arrays", loc, NPZ_HINT)

    def need(key: str) -> np.ndarray:
        if key not in arrays:
            raise DataError(f"npz file '{path}' has no array '{key}' (it has {', '.join(arrays)})", loc, NPZ_HINT)
        return arrays[key]

    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"npz file '{path}' has only one of x_test and y_test", loc, "store both, or neither")
    x, y = _npz_pair(path, need("x"), need("y"), "x", "y", loc)
    x_test = y_test = None
    if "x_test" in arrays:
        x_test, y_test = _npz_pair(path, arrays["x_test"], arrays["y_test"], "x_test", "y_test", loc)
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"npz file '{path}': x_test samples have shape {list(x_test.shape[1:])}, x samples "
                            f"{list(x.shape[1:])}", loc, "give x and x_test the same per-sample shape")
    names = None
    if "labels" in arrays:
        labels = arrays["labels"]
        if labels.ndim != 1 or labels.dtype.kind not in "US":
            raise DataError(f"npz file '{path}': 'labels' should be a 1-D string array of class names, got "
                            f"{labels.dtype} {list(labels.shape)}", loc, "store names with numpy.array(['cat', 'dog'])")
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in labels.tolist()]
    scale = 1 / 255 if x.dtype == np.uint8 else 1.0
    # Rows are known by their bytes: a row stored twice, or in x and in x_test, is one sample.
    ids = content_identities(row.tobytes() for row in x)
    test_ids = None if x_test is None else content_identities(row.tobytes() for row in x_test)
    return RawData(x=x, y=y, names=names, x_test=x_test, y_test=y_test, scale=scale, origin=str(path),
                   ids=ids, test_ids=test_ids)


def _check_npz_kind(path: Path, loc: Location | None) -> None:
    """An .npz is a zip archive: say what the file is instead when it is not one."""
    special = special_file(path)
    if special:
        raise DataError(f"npz file '{path}' is {special}, not a file", loc, NPZ_HINT)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise DataError(f"cannot read npz file '{path}': {e.strerror}", loc) from None
    if not head:
        raise DataError(f"npz file '{path}' is empty (0 bytes)", loc, NPZ_HINT)
    if head.startswith(_NPY_MAGIC):
        raise DataError(f"'{path}' is a single .npy array, not an .npz archive of named arrays", loc,
                        "save x and y together: numpy.savez(FILE, x=samples, y=labels)")
    if head.startswith(_ZIP_MAGIC):
        return
    text = head.decode("utf-8", errors="replace")
    sample = text[:-4] if len(head) == 64 else text  # the read may have cut the last character in two
    if all(ch.isprintable() or ch in "\t\r\n" for ch in sample):
        looks = f"text ({text.splitlines()[0][:30]!r}...)" if text.strip() else "blank text"
    else:
        looks = f"binary data starting {head[:8]!r}"
    raise DataError(f"'{path}' is not an npz archive: it holds {looks}", loc, NPZ_HINT)


def _npz_pair(path: Path, x: np.ndarray, y: np.ndarray, xn: str, yn: str, loc: Location | None):
    if x.dtype.kind not in "biuf" or x.ndim < 2:
        raise DataError(f"npz file '{path}': '{xn}' should be a numeric array (n, ...), got {x.dtype} {list(x.shape)}",
                        loc, NPZ_HINT)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"npz file '{path}': '{yn}' should be a 1-D integer array of class ids, got {y.dtype} "
                        f"{list(y.shape)}", loc, "store class ids as integers; put class names in a 'labels' array")
    if len(x) != len(y):
        raise DataError(f"npz file '{path}': {len(x)} samples in '{xn}' but {len(y)} labels in '{yn}'", loc,
                        "give every sample one label")
    if x.dtype != np.uint8:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32)  # beyond float32's range becomes infinity, refused just below
        check_finite(x, f"npz file '{path}': '{xn}'", loc)
    return x, y.astype(np.int64)


def check_finite(x: np.ndarray, what: str, loc: Location | None) -> None:
    """Refuse samples holding NaN or infinity: training on them ends at chance accuracy, silently."""
    bad = ~np.isfinite(x)
    if bad.any():
        first = ", ".join(map(str, np.unravel_index(int(np.argmax(bad)), x.shape)))
        raise DataError(f"{what} holds {int(bad.sum()):,} value(s) that are NaN, infinite or beyond float32's range, "
                        f"the first at [{first}]", loc,
                        "replace or drop those samples (numpy.isfinite(x) finds them) and save the file again")


# ---- folder -------------------------------------------------------------------------------------

def folder_classes(root_arg: str, bases: list[Path], loc: Location | None) -> tuple[Path, list[str]]:
    """The root folder and its class sub-folder names, sorted."""
    hint = "make a folder with one sub-folder of images (png, jpg) per class, e.g. DIR/cat/1.png, DIR/dog/7.jpg"
    root, tried = resolve_path(root_arg, bases)
    if root is None:
        raise missing_path_error("image folder", root_arg, tried, loc, hint)
    if not root.is_dir():
        raise DataError(f"image folder '{root}' is a file, not a folder", loc, hint)
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"image folder '{root}' has no class sub-folders", loc, hint)
    return root, names


def read_image_folder(folder: Path, height: int, width: int, mode: str,
                      loc: Location | None) -> tuple[np.ndarray, np.ndarray]:
    """Every image directly in one class folder, sorted by file name, and each file's identity: uint8
    (n, C, height, width), or float32 in [0, 1] when an image has 16 bits per channel (scaled by 1/65535,
    not clipped to 255).

    A file is known by its bytes (`content_identities`), so the same image
    file in two class folders, or in two folders, is one sample. A class
    folder holding sub-folders is refused rather than read in part: their
    images would be silently left out (docs: the data stage).
    """
    from PIL import Image, UnidentifiedImageError

    entries = sorted(folder.iterdir())
    nested = [p.name for p in entries if p.is_dir() and not p.name.startswith(".")]
    files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if nested:
        shown = ", ".join(nested[:5]) + (", ..." if len(nested) > 5 else "")
        hint = (f"if those are the classes, write folder(\"{folder}\"); otherwise move their images up into it"
                if not files else "move the sub-folders' images up into the class folder, or the sub-folders out")
        raise DataError(f"class folder '{folder}' holds sub-folders ({shown}): partc reads the images directly "
                        "inside each class folder, and would leave theirs out", loc, hint)
    if not files:
        raise DataError(f"class folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})", loc,
                        "put the class's images there, or leave the class out of classes=...")
    images, contents = [], []
    for file in files:
        try:
            contents.append(file.read_bytes())
            with Image.open(io.BytesIO(contents[-1])) as image:
                images.append(_pixels(image, height, width, mode, file, loc))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            # Pillow names the in-memory stream it was given ("<_io.BytesIO object at 0x...>"), not the file
            why = ("not an image Pillow recognises: damaged, or of another format" if isinstance(e, UnidentifiedImageError)
                   else exception_text(e, 160))
            raise DataError(f"cannot read image '{file}' ({why})", loc,
                            "replace or delete the file; only images belong in class folders") from None
    if any(im.dtype != np.uint8 for im in images):
        images = [im.astype(np.float32) / 255 if im.dtype == np.uint8 else im for im in images]
    return np.stack(images), content_identities(contents)


_SIXTEEN_BITS = ("I;16", "I;16B", "I;16L", "I;16N")


def _pixels(image, height: int, width: int, mode: str, file: Path, loc: Location | None) -> np.ndarray:
    """One image as (C, height, width): uint8, or float32 in [0, 1] for a 16-bit one."""
    from PIL import Image

    if image.mode in _SIXTEEN_BITS or image.mode == "I":
        values = np.asarray(image, dtype=np.float32)
        if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"image '{file}' has 32-bit integer pixels (they run {values.min():.0f}..{values.max():.0f})",
                            loc, "store images with 8 or 16 bits per channel")
        grey = np.asarray(Image.fromarray(values / 65535).resize((width, height), Image.Resampling.BILINEAR))
        channels = [grey] * min(len(mode), 3) + ([np.ones_like(grey)] if mode == "RGBA" else [])
        return np.clip(np.stack(channels), 0, 1).astype(np.float32)
    if image.mode == "F":
        raise DataError(f"image '{file}' has floating-point pixels, whose range partc cannot know", loc,
                        "store images with 8 or 16 bits per channel")
    pixels = np.asarray(image.convert(mode).resize((width, height), Image.Resampling.BILINEAR))
    return pixels.reshape(height, width, len(mode)).transpose(2, 0, 1)


# ---- synthetic ----------------------------------------------------------------------------------

def make_synthetic(classes: int, shape: tuple[int, ...], samples: int, seed: int, noise: float) -> RawData:
    """`classes` Gaussian prototypes in `shape`, plus N(0, noise^2) per element; classes take turns."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((classes, *shape)).astype(np.float32)
    y = np.arange(samples, dtype=np.int64) % classes
    x = prototypes[y] + np.float32(noise) * rng.standard_normal((samples, *shape)).astype(np.float32)
    # The generator's arguments name the data set: tasks that ask for the same one share its samples.
    ids = index_identities(f"synthetic/{classes}/{list(shape)}/{samples}/{seed}/{noise!r}", samples)
    return RawData(x=x, y=y, names=None, origin=f"synthetic(seed={seed})", ids=ids)
