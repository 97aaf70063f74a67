"""Write the data of specs/digit_domains.part: three looks of scikit-learn's digits, one npz per task.

scikit-learn's 1797 bundled 8x8 digits (no download) are split into three
disjoint thirds, stratified by class, so no image appears in two tasks. Each
third is drawn in a look of its own:

- plain.npz: the digits as they are (dark background, strokes up to 1);
- negative.npz: inverted at half contrast: strokes of 0.4 on a light
  background of 0.9 (polarity and contrast differ, so per-task input
  normalisation cannot map them back onto the plain digits' features);
- small.npz: the digit at half scale (4x4, 2x2 average), placed near the
  middle of the 8x8 frame (offset 1..3 pixels, at random), on a background
  of Gaussian noise (sd 0.1), clipped to [0, 1]: a different scale, place
  and noise level.

Each file holds x (n, 1, 8, 8) float32 in [0, 1], y (n,) int64 class ids
0..9 and labels "0".."9". The output is the same on every run (seed 0).

    python3 experiments/digit_domains_data.py            # writes data/digit_domains/*.npz
    python3 experiments/digit_domains_data.py --out DIR  # elsewhere (pass DIR's parent as --data-root)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

LOOKS = ("plain", "negative", "small")
SEED = 0


def thirds(y: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Three disjoint index sets, each holding a third of every class."""
    parts: list[list[int]] = [[], [], []]
    for label in np.unique(y):
        ids = rng.permutation(np.flatnonzero(y == label))
        for k, chunk in enumerate(np.array_split(ids, 3)):
            parts[k] += chunk.tolist()
    return [np.array(sorted(p)) for p in parts]


def negative(x: np.ndarray) -> np.ndarray:
    return 0.9 - 0.5 * x


def small(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    half = x.reshape(n, 1, 4, 2, 4, 2).mean(axis=(3, 5))  # 8x8 -> 4x4
    out = rng.normal(0.0, 0.1, size=(n, 1, 8, 8))
    rows, cols = rng.integers(1, 4, size=n), rng.integers(1, 4, size=n)
    for i in range(n):
        out[i, :, rows[i]:rows[i] + 4, cols[i]:cols[i] + 4] += half[i]
    return np.clip(out, 0.0, 1.0)


def make(out: Path) -> list[Path]:
    """Write plain.npz, negative.npz and small.npz into `out`; return their paths."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(SEED)
    parts = dict(zip(LOOKS, thirds(y, rng), strict=True))
    looks = {"plain": x[parts["plain"]], "negative": negative(x[parts["negative"]]),
             "small": small(x[parts["small"]], rng)}
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in LOOKS:
        path = out / f"{name}.npz"
        np.savez_compressed(path, x=looks[name].astype(np.float32), y=y[parts[name]],
                            labels=np.array([str(i) for i in range(10)]))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/digit_domains"), help="folder to write (default %(default)s)")
    args = parser.parse_args()
    for path in make(args.out):
        with np.load(path) as npz:
            print(f"{path}: {len(npz['y'])} images, mean {npz['x'].mean():.3f}, sd {npz['x'].std():.3f}")


if __name__ == "__main__":
    main()
