"""Data stage, sample identities: what a split goes by, so that every task sees a sample in the same role.

A sample's identity is a uint64: `index_identities` for samples a fixed
data set knows by position (digits, CIFAR, synthetic), `content_identities`
(SHA-256 of the bytes) for samples of user files (npz rows, image files), so
that a row or an image stored twice is one sample. `sample_keys` mixes the
network seed into each identity: the order in which `partc.data.splits`
hands out test, val and training samples depends on nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from partc.seeds import derived_seed


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 whose every output bit depends on every input bit."""
    with np.errstate(over="ignore"):
        x = np.asarray(x).astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def index_identities(namespace: str, n: int) -> np.ndarray:
    """Identities of the n samples of a data set known by position, e.g. ("digits", 1797)."""
    with np.errstate(over="ignore"):
        return _mix64(np.uint64(derived_seed("sample", namespace)) + np.arange(n, dtype=np.uint64))


def content_identities(samples: Iterable[bytes]) -> np.ndarray:
    """Identities of samples known by their bytes: equal bytes, one sample."""
    digests = b"".join(hashlib.sha256(b).digest()[:8] for b in samples)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def sample_keys(seed: int, ids: np.ndarray, purpose: str = "split") -> np.ndarray:
    """Each sample's place in an order drawn for `purpose`: a function of the seed and its identity alone."""
    return _mix64(np.asarray(ids, dtype=np.uint64) ^ np.uint64(derived_seed(seed, purpose)))
