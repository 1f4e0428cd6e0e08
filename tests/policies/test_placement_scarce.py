"""keep-scarce-free: ordinary requests leave hosts with free GPUs (or other scarce resources) alone
while other hosts fit; the pipeline, the placement index and batch placement agree on it."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.models import GroupPolicy, HostSpec, HostState
from poolvisor.domain.resources import ResourceSet
from poolvisor.policies.placement import PlacementPolicy, Request, place
from poolvisor.policies.placement.indexed import IndexedPlacer
from poolvisor.policies.placement.scarce import KeepScarceFreeScorer, smallest_requests, stranded
from poolvisor.policies.placement.scarce_batch import plan_batch_keeping_scarce
from poolvisor.state.cluster import ClusterState

RES = ResourceSet(("vcpu", "memory_mib", "gpu", "fpga"))


def cluster(n_gpu: int = 2, n_cpu: int = 3, fpga: bool = False, gpus: int = 4) -> ClusterState:
    """GPU hosts first (indices 0..n_gpu-1, the lowest: ties would pick them), then CPU hosts."""
    s = ClusterState(RES)
    for i in range(n_gpu):
        s.add_host(HostSpec(f"g{i}", {"vcpu": 16, "memory_mib": 32768, "gpu": gpus}, domain=f"r{i % 2}"))
    for i in range(n_cpu):
        cap = {"vcpu": 16, "memory_mib": 32768, **({"fpga": 1} if fpga and i == 0 else {})}
        s.add_host(HostSpec(f"c{i}", cap, domain=f"r{i % 2}"))
    return s


def vm(s: ClusterState, name: str, **demand: float) -> Request:
    return Request(name, s.resources.vector(demand))


def test_scorer_penalises_only_free_scarce_resources_the_request_leaves_unused() -> None:
    s = cluster()
    cand = np.arange(s.n)
    sc = KeepScarceFreeScorer()
    assert sc(s, vm(s, "a", vcpu=1), cand).tolist() == [-1, -1, 0, 0, 0]
    assert sc(s, vm(s, "b", vcpu=1, gpu=1), cand).tolist() == [0] * 5  # it uses the GPUs
    s.allocate(0, s.resources.vector({"gpu": 4}))  # g0's GPUs all taken: filling it strands nothing
    assert sc(s, vm(s, "a", vcpu=1), cand).tolist() == [0, -1, 0, 0, 0]
    assert sc(s, vm(s, "a", vcpu=1), np.array([], dtype=np.int64)).size == 0


def test_pipeline_keeps_gpu_hosts_for_gpu_requests_and_explains_it() -> None:
    s = cluster()
    s.allocate(1, s.resources.vector({"vcpu": 8, "memory_mib": 16384}))  # g1 is the fullest: best fit
    d = place(s, vm(s, "web", vcpu=2, memory_mib=4096))
    assert d.host == "c0"
    top = d.explanation.top
    assert top[0].scores == {"best-fit": 0.0, "soft-affinity": 0.0, "keep-scarce-free": 1.0}
    assert "10*keep-scarce-free" in d.explanation.rule
    assert place(s, vm(s, "ml", vcpu=2, gpu=1)).host == "g1"  # GPU requests: best fit among GPU hosts
    # without the scorer, best fit strands g1's GPUs
    assert place(s, vm(s, "web", vcpu=2, memory_mib=4096),
                 PlacementPolicy(scorers=(("best-fit", 1.0),))).host == "g1"
    # only a GPU host fits: it is used (no rejection, just the last resort)
    for h in (2, 3, 4):
        s.allocate(h, s.resources.vector({"memory_mib": 16384}))
    assert place(s, vm(s, "big", vcpu=2, memory_mib=20000)).host == "g0"


def test_custom_scarce_resources_and_validation() -> None:
    s = cluster(fpga=True)
    assert place(s, vm(s, "a", vcpu=1)).host == "c0"  # c0's FPGA is not scarce by default
    pol = PlacementPolicy(scarce=("gpu", "fpga"))
    assert place(s, vm(s, "a", vcpu=1), pol).host == "c1"
    assert place(s, vm(s, "f", vcpu=1, fpga=1), pol).host == "c0"
    assert PlacementPolicy(scarce=("fpga",)).protected_scarce == ("fpga",)
    assert PlacementPolicy(scorers=(("best-fit", 1.0),)).protected_scarce == ()
    assert PlacementPolicy(scarce=("nvme_x",)).scarce == ("nvme_x",)  # not in this state: ignored
    for bad in (("GPU",), ("gpu", "gpu"), ("",)):
        with pytest.raises(InvalidInputError):
            PlacementPolicy(scarce=bad)


def test_default_policy_prefers_cpu_hosts_over_a_free_fpga_host_only_when_fpga_is_scarce() -> None:
    s = cluster(n_gpu=0, n_cpu=2, fpga=True)
    s.allocate(0, s.resources.vector({"vcpu": 4}))  # c0 (with the FPGA) is fuller: best fit picks it
    assert place(s, vm(s, "a", vcpu=1)).host == "c0"
    assert place(s, vm(s, "a", vcpu=1), PlacementPolicy(scarce=("gpu", "fpga"))).host == "c1"


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("policy", [PlacementPolicy(), PlacementPolicy.named("spread"),
                                    PlacementPolicy(scarce=("gpu", "fpga"))])
def test_index_matches_the_pipeline_while_filling_past_the_cpu_hosts(jit: bool, policy: PlacementPolicy
                                                                     ) -> None:
    s = cluster(n_gpu=3, n_cpu=4, fpga=True, gpus=8)
    placer = IndexedPlacer(s, policy, jit=jit)
    assert placer.index.plan.supported and placer.index.plan.scarce
    kinds = [dict(vcpu=2, memory_mib=4096), dict(vcpu=1, memory_mib=2048, gpu=1),
             dict(vcpu=4, memory_mib=8192), dict(vcpu=1, fpga=1), dict(vcpu=2, memory_mib=1024)]
    groups = [None, ("g", GroupPolicy.ANTI_AFFINITY), ("d", GroupPolicy.DOMAIN_SPREAD)]
    keep = KeepScarceFreeScorer(policy.scarce)
    last_resort = 0
    for i in range(120):
        g = groups[i % 7 % 3] if i % 5 == 0 else None
        req = Request(f"w{i}", s.resources.vector(kinds[i % len(kinds)]),
                      group=g[0] if g else None, group_policy=g[1] if g else None)
        want = place(s, req, policy).host_index
        got = placer.place_fast(req)
        assert got == (-1 if want is None else want), (i, req)
        if got >= 0 and g is None and keep(s, req, np.array([got]))[0] < 0:
            # a host with free scarce resources this request does not use: only if no other fits
            others = keep(s, req, np.arange(s.n)) == 0
            fits = s.up & (s.free >= req.demand[:, None] - 1e-9).all(axis=0)
            assert not (others & fits).any(), (i, req)
            last_resort += 1
        if got >= 0:
            s.allocate(got, req.demand, req.group)
        if i == 60:
            s.set_state("c1", HostState.MAINTENANCE)
    assert last_resort > 0  # the run got that far
    # the index served the ordinary placements itself; exact scans only decide first sightings,
    # last resorts and requests that fit nowhere while hosts with free GPUs exist
    assert placer.stats["tree"] >= 40
    placer.close()


def test_index_declines_a_scarce_weight_that_does_not_dominate() -> None:
    s = cluster()
    weak = PlacementPolicy(scorers=(("best-fit", 1.0), ("keep-scarce-free", 0.5)))
    placer = IndexedPlacer(s, weak)
    assert not placer.index.plan.supported
    req = vm(s, "a", vcpu=1)
    assert placer.place_fast(req) == place(s, req, weak).host_index


def test_batch_plan_keeps_gpu_hosts_free() -> None:
    s = cluster(n_gpu=2, n_cpu=2)
    names = [f"v{i}" for i in range(10)] + ["ml"]
    demands = np.array([s.resources.vector({"vcpu": 2, "memory_mib": 4096})] * 10
                       + [s.resources.vector({"vcpu": 2, "memory_mib": 4096, "gpu": 2})])
    plan = plan_batch_keeping_scarce(s, names, demands, scarce=("gpu",))
    hosts = [s.names[h] for h in plan.assignment]
    assert all(h.startswith("c") for h in hosts[:10]) and hosts[10].startswith("g")
    assert plan.unplaced == [] and "keep-scarce-free" in plan.notes[-1]
    # more than the CPU hosts hold: the rest go to a GPU host rather than fail
    many = np.array([s.resources.vector({"vcpu": 8, "memory_mib": 1024})] * 6)
    plan = plan_batch_keeping_scarce(s, [f"b{i}" for i in range(6)], many, scarce=("gpu",))
    hosts = [s.names[h] for h in plan.assignment]
    assert plan.unplaced == [] and sum(h.startswith("c") for h in hosts) == 4
    assert any("only a host with free gpu fits" in m.rule for m in plan.moves)
    assert plan.hosts_after == 3 and plan.hosts_before == 0


def test_stranded_counts_free_gpus_no_gpu_request_can_use() -> None:
    s = cluster(n_gpu=3, n_cpu=1)
    probes = smallest_requests(s.resources, ("gpu", "fpga"), [{"vcpu": 1, "memory_mib": 512},
                                                              {"vcpu": 4, "memory_mib": 8192, "gpu": 1}])
    assert set(probes) == {"gpu", "fpga"}
    assert probes["gpu"].tolist() == [4, 8192, 1, 0] and probes["fpga"].tolist() == [1, 512, 0, 1]
    s.allocate(0, s.resources.vector({"vcpu": 1, "memory_mib": 30000}))  # 2768 MiB left < 8192
    s.allocate(1, s.resources.vector({"vcpu": 16, "gpu": 1}))  # CPU full on g1, 3 GPUs stuck
    s.set_state("g2", HostState.DOWN)
    out = stranded(s, probes)
    assert out["gpu"].tolist() == [4, 3, 0, 0] and out["fpga"].tolist() == [0, 0, 0, 0]
    assert stranded(s, probes, np.array([1]))["gpu"].tolist() == [3]
    # no flavor needs a GPU: one GPU plus the smallest flavor
    probes = smallest_requests(s.resources, ("gpu",), [{"vcpu": 1, "memory_mib": 512}])
    assert probes["gpu"].tolist() == [1, 512, 1, 0]
    assert stranded(s, probes)["gpu"].tolist() == [0, 3, 0, 0]
