"""Shared GPUs in the live pipeline (policies/placement/gpushare.py): the fgd-ri scorer computes the
same scores as the simulator's fgd-ri policy on the same state (one core, gpufrag.score_details),
the per-device filter, requests as GPU fractions, and the per-GPU books."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import require_shared_data
from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.domain.models import HostSpec
from poolvisor.policies.placement import PlacementPolicy, Request, place
from poolvisor.policies.placement import gpufrag as gf
from poolvisor.policies.placement import gpushare as gs
from poolvisor.policies.placement.registry import make_filter, make_scorer
from poolvisor.sim.online import paper as pp
from poolvisor.state.cluster import ClusterState

RES = ("vcpu", "memory_mib", "gpu")


def pool(caps: list[tuple[float, float, int]]) -> ClusterState:
    st = ClusterState(RES)
    for i, (c, m, g) in enumerate(caps):
        st.add_host(HostSpec(f"h{i:03d}", {"vcpu": c, "memory_mib": m, "gpu": g}))
    return st


def demand(st: ClusterState, cpu: float, gpu: float, mem: float = 0.0) -> np.ndarray:
    return st.resources.vector({"vcpu": cpu, "gpu": gpu, "memory_mib": mem})


def test_live_scorer_and_simulator_policy_score_the_same_state() -> None:
    """Place part of a trace slice with the simulator's fgd-ri, mirror the state into a ClusterState,
    then score more pods both ways: the arrays are identical, and place() picks the simulator's node."""
    full = pp.load_paper_data(require_shared_data("alibaba-gpu-2023"))
    idx = np.arange(0, full.node_names.size, 12)
    data = replace(full, node_names=full.node_names[idx], node_cpu=full.node_cpu[idx],
                   node_mem=full.node_mem[idx], node_gpus=full.node_gpus[idx])
    arr = pp.make_arrivals(data, 3)
    fill = pp.interleaved_fill(data, 3)
    cl = pp.GpuShareCluster(data, data.workload, fill)
    sim_score = pp.SCORERS["fgd-ri"]
    rng = np.random.default_rng(0)
    for i in arr.order[:260]:  # about 60 % of the slice's GPUs
        pod = gf.Pod(float(data.pod_cpu[i]), int(data.pod_count[i]), int(data.pod_milli[i]))
        cand = cl.feasible(pod, float(data.pod_mem[i]))
        if cand.size:
            s, g = sim_score(cl, cand, pod, rng)
            k = int(np.argmax(s))
            cl.place(int(cand[k]), pod, float(data.pod_mem[i]), int(g[k]) if g is not None else -1)
    assert 0.3 < cl.used_milli / data.capacity_milli < 0.9

    view = pool([(float(c), float(m), int(g)) for c, m, g in zip(data.node_cpu, data.node_mem, data.node_gpus,
                                                                  strict=True)])
    for h in range(view.n):  # the same allocation, CPU in the pool's unit (here milli-CPU)
        used = np.array([data.node_cpu[h] - cl.cpu_left[h], data.node_mem[h] - cl.mem_left[h],
                         (data.node_gpus[h] * 1000 - cl.dev[h].sum()) / 1000.0])
        view.allocate(h, used)
    gs.attach(view, gs.GpuDevices(cl.dev, workload=data.workload, fill=fill))
    live = make_scorer("fgd-ri")
    policy = PlacementPolicy(filters=("host-state", "capacity", "gpu-devices"), scorers=(("fgd-ri", 1.0),))
    checked = 0
    for i in arr.order[260:330]:
        pod = gf.Pod(float(data.pod_cpu[i]), int(data.pod_count[i]), int(data.pod_milli[i]))
        cand = cl.feasible(pod, float(data.pod_mem[i]))
        if not cand.size:
            continue
        req = Request(f"p{i}", demand(view, pod.cpu, pod.gpu_milli / 1000.0, float(data.pod_mem[i])))
        want, _ = sim_score(cl, cand, pod, rng)
        got = live(view, req, cand)
        np.testing.assert_array_equal(got, want)
        decision = place(view, req, policy)
        assert decision.host_index == int(cand[int(np.argmax(want))])
        checked += 1
    assert checked > 30


def test_requests_are_fractions_of_one_gpu_or_whole_gpus() -> None:
    st = pool([(64, 1e5, 2)])
    assert gs.request_pod(st, demand(st, 4, 0.5)) == gf.Pod(4.0, 1, 500)
    assert gs.request_pod(st, demand(st, 4, 2)) == gf.Pod(4.0, 2, 1000)
    assert gs.request_pod(st, demand(st, 4, 0)) == gf.Pod(4.0, 0, 0)
    with pytest.raises(InvalidInputError, match="fraction of one GPU"):
        gs.request_pod(st, demand(st, 4, 1.5))


def test_device_filter_rejects_hosts_whose_free_gpu_is_split() -> None:
    st = pool([(64, 1e5, 2), (64, 1e5, 2)])
    dev = gs.attach(st, gs.GpuDevices(np.array([[400, 400], [1000, 0]])))
    req = Request("r", demand(st, 2, 0.5))
    verdict = make_filter("gpu-devices")(st, req)
    assert verdict.mask.tolist() == [False, True] and "no GPU with room for it" in verdict.reason_masks
    d = place(st, req, PlacementPolicy(filters=("capacity", "gpu-devices"), scorers=(("fgd-ri", 1.0),)))
    assert d.host == "h001"
    assert "gpu-devices rejected 1" in d.explanation.summary()
    dev.free[1] = [0, 0]
    d = place(st, req, PlacementPolicy(filters=("capacity", "gpu-devices"), scorers=(("fgd-ri", 1.0),)))
    assert d.host is None


def test_packed_view_and_per_gpu_books() -> None:
    st = pool([(64, 1e5, 4), (64, 1e5, 2)])
    st.allocate(0, demand(st, 1, 2))
    st.allocate(0, demand(st, 1, 0.3))
    dev = gs.GpuDevices.packed(st)
    assert dev.free.tolist() == [[0, 0, 700, 1000], [1000, 1000, 0, 0]]
    assert gs.devices_of(st).free.tolist() == dev.free.tolist()  # nothing attached: the packed view
    got = dev.allocate(0, gf.Pod(1, 1, 600))  # tightest GPU with room
    assert got.tolist() == [2] and dev.free[0].tolist() == [0, 0, 100, 1000]
    assert dev.allocate(1, gf.Pod(1, 2, 1000)).tolist() == [0, 1]
    with pytest.raises(ConflictError):
        dev.allocate(1, gf.Pod(1, 1, 1000))
    dev.release(1, gf.Pod(1, 2, 1000), np.array([0, 1]))
    with pytest.raises(ConflictError):
        dev.release(1, gf.Pod(1, 1, 500), np.array([0]))
    with pytest.raises(InvalidInputError, match="0..1000"):
        gs.GpuDevices(np.array([[1200]]))
    with pytest.raises(InvalidInputError, match="hosts"):
        gs.attach(st, gs.GpuDevices(np.zeros((5, 2))))


def test_scorer_learns_the_workload_and_explains() -> None:
    st = pool([(96, 4e5, 8), (96, 4e5, 8), (16, 1e5, 2)])
    dev = gs.attach(st, gs.GpuDevices.packed(st))
    scorer = gs.FgdRiScorer()
    for g in (0.5, 0.5, 1, 0.3):
        req = Request("r", demand(st, 4, g))
        scores = scorer(st, req, np.arange(3))
        h = int(np.argmax(scores))
        why = scorer.explain(st, req, [h])[0]
        assert why["host"] == st.names[h] and why["score"] == pytest.approx(scores[h])
        assert why["score"] == pytest.approx(why["fgd_points"] - why["residue_penalty"] + why["fill_term"])
        dev.allocate(h, gs.request_pod(st, req.demand), why["gpu"])
        st.allocate(h, req.demand)
    assert len(dev.history) == 4 and set(dev.workload().milli.tolist()) <= {300, 500, 1000}
    fill = dev.fill(st)
    assert np.array_equal(fill, dev.fill(st)) and fill.shape == (3,)  # deterministic


def test_learned_workload_follows_the_latest_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the history is full, new requests still change the target workload (the window slides)."""
    monkeypatch.setattr(gs, "HISTORY", 4)
    dev = gs.GpuDevices(np.full((1, 8), 1000))
    for _ in range(4):
        dev.allocate(0, gf.Pod(1, 1, 100))
        dev.release(0, gf.Pod(1, 1, 100), np.array([int(np.argmin(dev.free[0]))]))
    assert dev.workload().milli.tolist() == [100]
    for _ in range(4):
        dev.allocate(0, gf.Pod(1, 1, 200))
    assert dev.workload().milli.tolist() == [200] and len(dev.history) == 4 and dev.allocations == 8
