"""Longest-prefix match, IPv4 and IPv6: a binary trie for single lookups and updates, and an
interval table for vectorized batch lookups.

`PrefixTrie` walks at most `bits` nodes per lookup (32 or 128), remembering the last node that
holds a value. `IntervalTable` flattens a prefix set into disjoint address intervals, each labelled
with its most specific covering prefix (nested prefixes split their parent's interval), so a
lookup is one binary search: `np.searchsorted` does a million of them in a few tens of ms. IPv6
keys are 16-byte big-endian strings (numpy's 'S16' compares them bytewise, i.e. numerically).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import numpy as np

V = TypeVar("V")
_EMPTY = object()


class PrefixTrie(Generic[V]):
    """Prefixes of a `bits`-wide address space (32 or 128) mapped to values."""

    def __init__(self, bits: int) -> None:
        if bits not in (32, 48, 128):
            raise ValueError("bits must be 32, 48 or 128")
        self.bits = bits
        self._root: list[object] = [None, None, _EMPTY]  # [child0, child1, value]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _check(self, network: int, prefixlen: int) -> None:
        if not 0 <= prefixlen <= self.bits or not 0 <= network < (1 << self.bits):
            raise ValueError(f"invalid prefix {network:#x}/{prefixlen}")
        if prefixlen < self.bits and network & ((1 << (self.bits - prefixlen)) - 1):
            raise ValueError(f"prefix {network:#x}/{prefixlen} has host bits set")

    def insert(self, network: int, prefixlen: int, value: V) -> None:
        """Add or replace the value of network/prefixlen."""
        self._check(network, prefixlen)
        node = self._root
        for i in range(prefixlen):
            b = (network >> (self.bits - 1 - i)) & 1
            child = node[b]
            if child is None:
                child = [None, None, _EMPTY]
                node[b] = child
            node = child  # type: ignore[assignment]
        if node[2] is _EMPTY:
            self._size += 1
        node[2] = value

    def remove(self, network: int, prefixlen: int) -> bool:
        """Drop network/prefixlen (empty branches are pruned); False when it was not there."""
        self._check(network, prefixlen)
        path = [self._root]
        for i in range(prefixlen):
            child = path[-1][(network >> (self.bits - 1 - i)) & 1]
            if child is None:
                return False
            path.append(child)  # type: ignore[arg-type]
        if path[-1][2] is _EMPTY:
            return False
        path[-1][2] = _EMPTY
        self._size -= 1
        for i in range(prefixlen, 0, -1):  # prune leaves that hold nothing
            node = path[i]
            if node[0] is None and node[1] is None and node[2] is _EMPTY:
                path[i - 1][(network >> (self.bits - i)) & 1] = None
            else:
                break
        return True

    def lookup(self, address: int) -> tuple[int, int, V] | None:
        """(network, prefixlen, value) of the longest prefix containing `address`, or None."""
        node: list[object] | None = self._root
        best: tuple[int, object] | None = None
        depth = 0
        while node is not None:
            if node[2] is not _EMPTY:
                best = (depth, node[2])
            if depth == self.bits:
                break
            node = node[(address >> (self.bits - 1 - depth)) & 1]  # type: ignore[assignment]
            depth += 1
        if best is None:
            return None
        plen = best[0]
        mask = ((1 << plen) - 1) << (self.bits - plen) if plen else 0
        return address & mask, plen, best[1]  # type: ignore[return-value]

    def items(self) -> list[tuple[int, int, V]]:
        """Every (network, prefixlen, value), in address order (parents before children)."""
        out: list[tuple[int, int, V]] = []
        stack: list[tuple[list[object], int, int]] = [(self._root, 0, 0)]
        while stack:
            node, net, depth = stack.pop()
            if node[2] is not _EMPTY:
                out.append((net, depth, node[2]))  # type: ignore[arg-type]
            for b in (1, 0):
                child = node[b]
                if child is not None:
                    stack.append((child, net | (b << (self.bits - 1 - depth)), depth + 1))  # type: ignore[arg-type]
        return out


class IntervalTable:
    """A prefix set flattened for batch lookups: `lookup(addresses)` returns, for each address, the
    index (into the prefixes given) of its longest matching prefix, or -1."""

    def __init__(self, bits: int, networks: Sequence[int], prefixlens: Sequence[int]) -> None:
        if bits not in (32, 128):
            raise ValueError("bits must be 32 or 128")
        self.bits = bits
        if len(networks) != len(prefixlens):
            raise ValueError("networks and prefixlens differ in length")
        top = (1 << bits) - 1
        # Parents before children: sort by start, then by length (shorter first). Duplicates: the
        # last one given wins (as in the trie).
        order = sorted(range(len(networks)), key=lambda i: (networks[i], prefixlens[i], i))
        starts: list[int] = [0]
        labels: list[int] = [-1]
        stack: list[tuple[int, int]] = []  # (end, index) of the prefixes covering the sweep point

        def emit(at: int, label: int) -> None:
            if starts[-1] == at:
                labels[-1] = label
            elif labels[-1] != label:
                starts.append(at)
                labels.append(label)

        for i in order:
            net, plen = int(networks[i]), int(prefixlens[i])
            if not 0 <= plen <= bits or net & (((1 << (bits - plen)) - 1) if plen < bits else 0):
                raise ValueError(f"invalid prefix {net:#x}/{plen}")
            end = net | ((1 << (bits - plen)) - 1 if plen < bits else 0)
            while stack and stack[-1][0] < net:  # close the prefixes that end before this one
                e, _ = stack.pop()
                if e < top:
                    emit(e + 1, stack[-1][1] if stack else -1)
            if stack and stack[-1][0] == end and _start_of(networks, stack[-1][1]) == net:
                stack.pop()  # the same prefix again: the later one replaces it
            stack.append((end, i))
            emit(net, i)
        while stack:
            e, _ = stack.pop()
            if e < top:
                emit(e + 1, stack[-1][1] if stack else -1)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.starts = _keys(bits, starts)

    def __len__(self) -> int:
        return int(self.labels.size)

    def lookup(self, addresses: np.ndarray) -> np.ndarray:
        """Indices of the longest matching prefixes (-1: none). IPv4: unsigned integers; IPv6: an
        'S16' array of big-endian keys (see `keys`)."""
        q = np.asarray(addresses)
        if self.bits == 32:
            q = q.astype(np.uint64, copy=False)
        idx = np.searchsorted(self.starts, q, side="right") - 1
        return self.labels[idx]


def keys(bits: int, values: Sequence[int]) -> np.ndarray:
    """Addresses as the array type IntervalTable.lookup takes."""
    return _keys(bits, values)


def _keys(bits: int, values: Sequence[int]) -> np.ndarray:
    if bits == 32:
        return np.asarray(values, dtype=np.uint64)
    return np.array([int(v).to_bytes(16, "big") for v in values], dtype="S16")


def _start_of(networks: Sequence[int], i: int) -> int:
    return int(networks[i])
