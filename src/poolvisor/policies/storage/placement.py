"""Replica placement by weighted rendezvous hashing (straw2), vectorized over objects and devices.

Every (object, device) pair gets a pseudo-random u in (0, 1) from a 64-bit hash of both keys;
the device's draw is ln(u) / weight and the highest draw wins. A device's chance of winning is
its share of the weight, and because a draw depends only on its own (object, device) pair, a
device joining or leaving changes only the objects it wins or held: the least possible movement.

Replicas go to distinct failure domains: the greedy "walk the draws in order, skip a domain
already used" equals "rank domains by their best device's draw, take the top R, each with its
best device", which is what is computed here, one domain at a time over a batch of objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def key64(name: str) -> int:
    """A stable 64-bit key for a name (device or object id): the same on every run and machine."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def keys64(names: Sequence[str]) -> U64:
    """`key64` of many names, as a uint64 array."""
    return np.fromiter((key64(n) for n in names), dtype=np.uint64, count=len(names))


def mix64(x: U64) -> U64:
    """splitmix64 finalizer: a bijective, well-mixed uint64 -> uint64 (wrapping arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def draws(objects: U64, device_keys: U64, weights: F64) -> F64:
    """Straw2 draws, shape (objects, devices): ln(u) / weight; -inf for a zero-weight device."""
    h = mix64(objects[:, None] ^ mix64(device_keys)[None, :])
    u = ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)
    with np.errstate(divide="ignore"):
        inv = np.where(weights > 0, 1.0 / np.maximum(weights, 1e-300), 0.0)
    out = np.log(u) * inv[None, :]
    out[:, weights <= 0] = -np.inf
    return out


@dataclass(frozen=True)
class Devices:
    """The devices placement may use: stable keys, weights (e.g. capacity) and failure domains.

    Order does not matter: results are device *keys*, and the same set in any order places alike.
    """

    keys: U64
    weights: F64
    domains: I64

    @classmethod
    def of(cls, names: Sequence[str], weights: Sequence[float], domains: Sequence[str]) -> Devices:
        """Build from device names, weights and failure-domain names."""
        if not len(names) == len(weights) == len(domains):
            raise ValueError("names, weights and domains must have the same length")
        if len(set(names)) != len(names):
            raise ValueError("device names must be unique")
        dom_ids = {d: i for i, d in enumerate(sorted(set(domains)))}
        return cls(keys64(names), np.asarray(weights, dtype=np.float64),
                   np.array([dom_ids[d] for d in domains], dtype=np.int64))


def place(objects: U64, devices: Devices, replicas: int, batch: int = 32768) -> U64:
    """Replica device keys per object, shape (objects, replicas), best draw first (the primary).

    A slot is 0 when fewer than `replicas` failure domains have a device of positive weight.
    """
    if replicas < 1:
        raise ValueError("replicas must be >= 1")
    n = len(objects)
    out = np.zeros((n, replicas), dtype=np.uint64)
    if n == 0 or len(devices.keys) == 0:
        return out
    order = np.argsort(devices.domains, kind="stable")
    keys, weights, doms = devices.keys[order], devices.weights[order], devices.domains[order]
    starts = np.flatnonzero(np.r_[True, doms[1:] != doms[:-1]])
    ends = np.r_[starts[1:], len(doms)]
    m = len(starts)
    take = min(replicas, m)
    for lo in range(0, n, batch):
        d = draws(objects[lo:lo + batch], keys, weights)
        best = np.empty((d.shape[0], m), dtype=np.float64)
        who = np.empty((d.shape[0], m), dtype=np.int64)
        for j, (s, e) in enumerate(zip(starts, ends, strict=True)):  # loop over domains, not objects
            seg = d[:, s:e]
            a = seg.argmax(axis=1)
            who[:, j] = s + a
            best[:, j] = seg[np.arange(seg.shape[0]), a]
        if take < m:
            top = np.argpartition(-best, take - 1, axis=1)[:, :take]
        else:
            top = np.broadcast_to(np.arange(m), (d.shape[0], m)).copy()
        top_scores = np.take_along_axis(best, top, axis=1)
        rank = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, rank, axis=1)
        chosen = keys[np.take_along_axis(who, top, axis=1)]
        chosen[np.take_along_axis(top_scores, rank, axis=1) == -np.inf] = 0
        out[lo:lo + batch, :take] = chosen
    return out


def object_keys(volume: str, chunks: int | Sequence[int]) -> U64:
    """Keys of a volume's chunks: the volume's key mixed with each chunk index."""
    idx = np.arange(chunks, dtype=np.uint64) if isinstance(chunks, int) else np.asarray(chunks, np.uint64)
    return mix64(np.uint64(key64(volume)) ^ mix64(idx))
