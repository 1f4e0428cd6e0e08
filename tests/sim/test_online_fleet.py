"""Fractional GPUs: a pod asking for part of a GPU must fit on ONE GPU of the node."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import ConflictError
from poolvisor.sim.online.fleet import Fleet, Job
from poolvisor.sim.online.fragmentation import (
    FragModel,
    TaskTypes,
    fragmentation_dedup,
    host_fragmentation,
)

RES = ("cpu_milli", "memory_mib", "gpu_milli")


def _fleet() -> Fleet:
    cap = np.array([[32000, 65536, 2000], [16000, 65536, 1000], [8000, 32768, 0]], dtype=float)
    return Fleet(["g2", "g1", "cpu"], RES, cap, devices=np.array([2, 1, 0]), device_resource="gpu_milli")


def _job(i: int, cpu: float, count: int, milli: int, mem: float = 1024) -> Job:
    return Job(i, np.array([cpu, mem, count * milli], dtype=float), count, milli)


def test_fraction_must_fit_on_one_device() -> None:
    f = _fleet()
    a = _job(0, 1000, 1, 600)
    assert f.feasible(a).tolist() == [0, 1]
    assert f.allocate(0, a).tolist() == [0]
    b = _job(1, 1000, 1, 600)
    assert f.allocate(0, b).tolist() == [1]  # device 0 has only 400 left
    assert f.dev_free[0].tolist() == [400, 400]
    c = _job(2, 1000, 1, 600)
    # node 0 still has 800 milli in total, but no single GPU with 600: only node 1 fits
    assert f.feasible(c).tolist() == [1]
    f.allocate(1, c)
    assert f.feasible(_job(3, 1000, 1, 600)).size == 0
    assert f.rejection_reason(_job(3, 1000, 1, 600)) == "device fragmentation"
    assert f.rejection_reason(_job(4, 1000, 1, 1000)) == "insufficient devices"
    f.check_invariants()


def test_whole_gpus_and_best_fit_inside_a_node() -> None:
    f = Fleet(["n"], RES, np.array([[64000, 262144, 3000]], dtype=float), devices=np.array([3]),
              device_resource="gpu_milli")
    f.allocate(0, _job(0, 100, 1, 300))  # device 0 -> 700 free
    f.allocate(0, _job(1, 100, 1, 700), devs=np.array([1]))  # device 1 -> 300 free
    assert f.dev_free[0].tolist() == [700, 300, 1000]
    # 250 milli goes to the fullest device that still fits (300 free), not the first one
    assert f.pick_devices(0, 1, 250).tolist() == [1]
    two = _job(2, 100, 2, 1000)
    assert f.feasible(two).size == 0  # only one whole GPU left
    one = _job(3, 100, 1, 1000)
    assert f.allocate(0, one).tolist() == [2]
    with pytest.raises(ConflictError):
        f.allocate(0, _job(4, 100, 1, 800))
    f.release(0, one, np.array([2]))
    assert f.dev_free[0].tolist() == [700, 300, 1000]
    f.check_invariants()


def test_cpu_and_memory_still_limit() -> None:
    f = _fleet()
    assert f.feasible(_job(0, 20000, 1, 500)).tolist() == [0]
    assert f.feasible(_job(1, 100, 0, 0, mem=40000)).tolist() == [0, 1]
    assert f.feasible(_job(2, 100, 0, 0)).tolist() == [0, 1, 2]
    f.set_up(0, False)
    assert f.feasible(_job(3, 20000, 1, 500)).size == 0
    assert f.rejection_reason(_job(3, 20000, 1, 500)) == "insufficient cpu_milli"


def test_fragmentation_by_hand() -> None:
    types = TaskTypes(gate=np.array([[1.0], [1.0]]), count=np.array([1, 1]), milli=np.array([500.0, 1000.0]),
                      p=np.array([0.5, 0.5]))
    # GPUs with 1000 and 300 free: both types fit (on GPU 0); the 300 left on GPU 1 is a fragment for both
    f = host_fragmentation(np.array([[10.0], [0.0]]), np.array([[1000, 300], [1000, 300]]), types)
    assert f.tolist() == [300.0, 1300.0]  # no CPU left: every free GPU unit is a fragment
    # 600 and 600 free: the 500 type fits (fragment 0), the whole-GPU type does not fit at all (1200)
    assert host_fragmentation(np.array([[10.0]]), np.array([[600, 600]]), types).tolist() == [600.0]


def test_dedup_and_pairs_agree_with_direct_evaluation() -> None:
    rng = np.random.default_rng(3)
    dev = rng.choice([0, 200, 500, 1000], size=(300, 4))
    dev[100:200] = dev[:100]  # duplicates
    gate = rng.choice([0.0, 4000.0, 16000.0], size=(300, 1))
    gate[100:200] = gate[:100]
    types = TaskTypes.from_demands(rng.choice([1000.0, 8000.0], size=(50, 1)), np.ones(50, dtype=int),
                                   rng.choice([250, 500, 1000], size=50))
    np.testing.assert_allclose(fragmentation_dedup(gate, dev, types), host_fragmentation(gate, dev, types))
    model = FragModel(types, gate_rows=(0,))
    job = _job(0, 1000, 1, 250)
    si, di, after = model.after_pairs(job, gate, dev)
    for k in range(0, si.size, 37):
        d = dev[si[k]].astype(float)
        d[di[k]] -= 250
        want = host_fragmentation(gate[si[k]][None] - 1000, d[None], types)[0]
        assert after[k] == pytest.approx(want)
