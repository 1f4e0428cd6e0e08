"""Longest-prefix match: the trie and the batch interval table against a brute-force scan."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolvisor.policies.network.lpm import IntervalTable, PrefixTrie, keys


@st.composite
def prefix_sets(draw, bits: int):
    # Prefixes cluster in a few regions so that nesting and shared starts are common.
    base = draw(st.integers(0, (1 << bits) - 1))
    out = []
    for _ in range(draw(st.integers(0, 25))):
        plen = draw(st.integers(0, bits))
        jitter = draw(st.integers(0, (1 << min(bits, 12)) - 1)) << max(0, bits - 16)
        addr = (base ^ jitter) & ((1 << bits) - 1)
        net = addr & ~((1 << (bits - plen)) - 1) & ((1 << bits) - 1) if plen < bits else addr
        out.append((net, plen))
    return out


def brute(prefixes: list[tuple[int, int]], bits: int, addr: int) -> int:
    best, best_len = -1, -1
    for i, (net, plen) in enumerate(prefixes):
        mask = ((1 << plen) - 1) << (bits - plen) if plen else 0
        if addr & mask == net and plen >= best_len:  # the later duplicate wins
            best, best_len = i, plen
    return best


@settings(max_examples=150, deadline=None)
@given(data=st.data(), bits=st.sampled_from([32, 128]))
def test_trie_and_interval_table_match_brute_force(data, bits):
    prefixes = data.draw(prefix_sets(bits))
    trie: PrefixTrie[int] = PrefixTrie(bits)
    for i, (net, plen) in enumerate(prefixes):
        trie.insert(net, plen, i)
    table = IntervalTable(bits, [n for n, _ in prefixes], [p for _, p in prefixes])
    probes = [0, (1 << bits) - 1]
    for net, plen in prefixes:  # every boundary of every prefix, and its neighbours
        end = net | ((1 << (bits - plen)) - 1) if plen < bits else net
        probes += [net, end, max(0, net - 1), min((1 << bits) - 1, end + 1)]
    probes += data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=20))
    got = table.lookup(keys(bits, probes))
    for a, g in zip(probes, got.tolist(), strict=True):
        want = brute(prefixes, bits, a)
        assert g == want
        hit = trie.lookup(a)
        assert (hit[2] if hit else -1) == want
        if hit:
            assert hit[:2] == prefixes[want]
    assert len(trie) == len(set(prefixes))


def test_trie_remove_and_items():
    t: PrefixTrie[str] = PrefixTrie(32)
    v4 = [("10.0.0.0/8", "a"), ("10.1.0.0/16", "b"), ("10.1.2.0/24", "c"), ("0.0.0.0/0", "default")]
    for p, v in v4:
        n = ipaddress.ip_network(p)
        t.insert(int(n.network_address), n.prefixlen, v)
    ip = lambda s: int(ipaddress.ip_address(s))  # noqa: E731
    assert t.lookup(ip("10.1.2.3"))[2] == "c"
    assert t.lookup(ip("10.1.3.3"))[2] == "b"
    assert t.lookup(ip("192.168.0.1"))[2] == "default"
    assert t.remove(ip("10.1.0.0"), 16) and not t.remove(ip("10.1.0.0"), 16)
    assert t.lookup(ip("10.1.3.3"))[2] == "a" and t.lookup(ip("10.1.2.3"))[2] == "c"
    assert [(str(ipaddress.ip_address(n)), p, v) for n, p, v in t.items()] == [
        ("0.0.0.0", 0, "default"), ("10.0.0.0", 8, "a"), ("10.1.2.0", 24, "c")]
    with pytest.raises(ValueError, match="host bits"):
        t.insert(ip("10.0.0.1"), 8, "x")
    t6: PrefixTrie[str] = PrefixTrie(128)
    n6 = ipaddress.ip_network("2001:db8::/32")
    t6.insert(int(n6.network_address), 32, "doc")
    assert t6.lookup(int(ipaddress.ip_address("2001:db8::1")))[2] == "doc"
    assert t6.lookup(int(ipaddress.ip_address("2001:db9::1"))) is None


def test_interval_table_batch_is_exact_on_a_large_random_table():
    rng = np.random.default_rng(1)
    n = 5000
    plens = rng.integers(8, 33, n)
    nets = (rng.integers(0, 1 << 32, n, dtype=np.uint64) >> (32 - plens).astype(np.uint64)) << (
        32 - plens).astype(np.uint64)
    trie: PrefixTrie[int] = PrefixTrie(32)
    for i, (a, p) in enumerate(zip(nets.tolist(), plens.tolist(), strict=True)):
        trie.insert(a, p, i)
    table = IntervalTable(32, nets.tolist(), plens.tolist())
    q = rng.integers(0, 1 << 32, 20000, dtype=np.uint64)
    q[:n] = nets  # every prefix's first address
    got = table.lookup(q)
    want = [(h[2] if (h := trie.lookup(a)) else -1) for a in q.tolist()]
    assert got.tolist() == want
