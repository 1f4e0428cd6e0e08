"""policies/admission.py: the pure admission check, figures computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.admission import AdmissionPolicy, admit, check_policy, headroom

RES = ["vcpu", "memory_mib"]
CAP = np.array([[8.0, 8.0, 16.0], [100.0, 100.0, 100.0]])  # 3 hosts, the third has twice the vcpu
UP = np.array([True, True, True])


def test_tolerate_k_removes_the_largest_hosts_per_resource():
    pol = AdmissionPolicy(tolerate=1)
    alloc = np.zeros_like(CAP)
    # vcpu: 32 - 16 (largest host) = 16 may be allocated; memory: 300 - 100 = 200
    assert admit(CAP, alloc, UP, np.array([16.0, 10.0]), pol, RES) is None
    r = admit(CAP, alloc, UP, np.array([16.5, 10.0]), pol, RES)
    assert r is not None and r.resource == "vcpu" and r.limit == 16.0 and r.headroom == 16.0
    assert "tolerate 1 host failure" in r.message()
    pol2 = AdmissionPolicy(tolerate=2)  # 32 - 16 - 8 = 8
    assert admit(CAP, alloc, UP, np.array([8.5, 0.0]), pol2, RES) is not None
    assert admit(CAP, alloc, UP, np.array([8.0, 0.0]), pol2, RES) is None


def test_reserve_percent_and_down_hosts():
    pol = AdmissionPolicy(reserve={"memory_mib": 25.0})
    alloc = np.array([[0.0, 0.0, 0.0], [100.0, 100.0, 0.0]])
    assert admit(CAP, alloc, UP, np.array([1.0, 25.0]), pol, RES) is None  # 225 <= 75 % of 300
    r = admit(CAP, alloc, UP, np.array([1.0, 26.0]), pol, RES)
    assert r is not None and r.resource == "memory_mib" and r.headroom == pytest.approx(25.0)
    up = np.array([True, False, True])  # a down host's capacity and allocation do not count
    r = admit(CAP, alloc, up, np.array([0.0, 51.0]), pol, RES)
    assert r is not None and r.limit == pytest.approx(150.0) and r.allocated == 100.0
    # a creation that asks for nothing of the short resource is admitted
    assert admit(CAP, alloc, up, np.array([1.0, 0.0]), pol, RES) is None


def test_tighter_rule_wins_and_no_policy_admits_everything():
    pol = AdmissionPolicy(tolerate=1, reserve={"vcpu": 75.0})  # tolerate: 16, reserve: 8
    room = headroom(CAP, np.zeros_like(CAP), UP, pol, RES)
    assert room["vcpu"]["limit"] == 8.0 and room["memory_mib"]["limit"] == 200.0
    r = admit(CAP, np.zeros_like(CAP), UP, np.array([9.0, 0.0]), pol, RES)
    assert r is not None and r.rule == "reserve 75 % of vcpu"
    assert admit(CAP, CAP * 2, UP, np.array([1e9, 1e9]), AdmissionPolicy(), RES) is None
    assert admit(CAP, np.zeros_like(CAP), UP, np.array([1.0, 0.0]), AdmissionPolicy(tolerate=5), RES) \
        is not None  # more failures than hosts: nothing may be allocated


@pytest.mark.parametrize("tolerate,reserve", [(-1, {}), (True, {}), (1.5, {}), (0, {"vcpu": 100}),
                                              (0, {"vcpu": -1}), (0, []), (0, {"vcpu": True})])
def test_bad_settings(tolerate, reserve):
    with pytest.raises(InvalidInputError):
        check_policy(tolerate, reserve)
