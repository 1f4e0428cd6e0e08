"""jit.CompileOnce: one build per process, shared by every thread; servers warm the kernels at start."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from poolvisor import jit


def test_a_thread_asking_during_the_build_waits_for_it_and_gets_its_outcome() -> None:
    started, builds = threading.Event(), []

    def build() -> None:
        builds.append(1)
        started.set()
        time.sleep(0.3)

    once = jit.CompileOnce(build)
    answers: list[bool] = []
    first = threading.Thread(target=lambda: answers.append(once.ready()))
    first.start()
    assert started.wait(5)
    assert once.ready() is True  # asked during the build: waits, never the numpy fallback
    first.join(5)
    assert answers == [True] and builds == [1]


def test_a_build_without_numba_is_false_for_every_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POOLVISOR_NO_JIT", raising=False)
    calls = []

    def build() -> None:
        calls.append(1)
        raise ImportError("no numba")

    once = jit.CompileOnce(build)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(once.ready())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [False] * 8 and calls == [1]


def test_no_jit_is_never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLVISOR_NO_JIT", "1")
    calls: list[int] = []
    once = jit.CompileOnce(lambda: calls.append(1))
    assert once.ready() is False and once.ready() is False and calls == []


def test_the_app_start_warms_the_kernels(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import warnings

    from poolvisor.api.app import create_app
    from poolvisor.services import open_services

    with warnings.catch_warnings():  # starlette prefers httpx2; plain httpx works the same here
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    warmed: list[int] = []
    monkeypatch.setattr(jit, "warm", lambda: warmed.append(1) or True)
    svc = open_services(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        app = create_app(svc, repair_interval=None, queue_interval=None, backup_interval=None)
        assert warmed == []
        with TestClient(app) as client:
            assert warmed == [1]  # in the lifespan, before the first request
            assert client.get("/healthz").status_code == 200
    finally:
        svc.close()


def test_warm_builds_the_served_kernels() -> None:
    pytest.importorskip("numba")
    from poolvisor.policies.placement import kernels as placement
    from poolvisor.state import kernels as state

    if jit.warm():
        assert state.add() is not None and placement.available()
