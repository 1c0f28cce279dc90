"""A stress CPU's RmmInternalError raised while the machine is alive, in this process on one bound
CPU (stress.worker.stress_cpu called directly, with its operations replaced: no CPU processes)."""

from __future__ import annotations

import multiprocessing
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rmm_mp import Machine
from rmm_mp.stress import worker
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.runner import _sched_plan
from rmm_mp.stress.schedule import STRATEGIES
from rmm_mp.stress.shared import END_ABORT, MODE_DETERMINISTIC, MODE_FREE, StressSegment
from rmm_mp.stress.worker import CpuPlan, CpuResult

FREE_IDX = 400
"""A granule whose lock word is free: releasing it is a lock word that is not the releaser's."""


class _OneBadOperation:
    """Operations (stress.ops) whose every kind runs ``operation`` on the CPU."""

    def __init__(self, operation: Callable[[Any], None]) -> None:
        self.operation = operation
        self.counts: dict[str, int] = {}
        self.idle = False

    def pick(self, weights: dict[str, float]) -> list[Callable[[random.Random], None]]:
        return [lambda rng: self.operation(self) for _ in weights]

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


@pytest.fixture(params=["free", "random"])
def run_one(request: pytest.FixtureRequest, machine: Machine,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[Machine], None]], tuple[CpuResult, int]]]:
    """Run CPU 0 of ``machine`` alone, free-running or under the random schedule, with every
    operation replaced by ``op``; gives its CpuResult and the stress segment's end word."""
    config = StressConfig(workload="tables", schedule=request.param, steps=50, checkers=())
    segs: list[StressSegment] = []
    pipes: list[Any] = []

    def run(op: Callable[[Machine], None]) -> tuple[CpuResult, int]:
        monkeypatch.setattr(worker, "Operations", lambda cpu, pop, seg: _OneBadOperation(lambda ops: op(machine)))
        det = config.deterministic
        seg = StressSegment.create(machine.name, 1, MODE_DETERMINISTIC if det else MODE_FREE,
                                   STRATEGIES.index(config.schedule) if det else 0, config.steps, 1)
        segs.append(seg)
        plan = CpuPlan(config, None, _sched_plan(config, seg))  # type: ignore[arg-type]
        if det:
            # The parent's first turn, given before the CPU parks for it.
            park, wake = multiprocessing.Pipe(duplex=False)
            pipes.extend((park, wake))
            plan = CpuPlan(config, None, plan.sched, (park,), (wake,))  # type: ignore[arg-type]
            seg.set_turn(0)
            os.write(wake.fileno(), b"\0")
        return worker.stress_cpu(machine.cpu(0), plan), seg.end

    yield run
    for seg in segs:
        seg.close()
    for end in pipes:
        end.close()


def test_an_internal_error_on_a_live_machine_is_a_finding(machine: Machine,
                                                         run_one: Callable[..., tuple[CpuResult, int]]) -> None:
    """CPU 0's operation releases, as its host, an NS granule's lock that the host does not
    hold (as on a lock word corrupted under it): hw.granule raises RmmInternalError outside the
    RMM, so the machine stays alive. The CPU reports a functional `internal-error` finding with
    the error's text and the first frame outside the lock API as its site, and aborts the run
    (in both modes). Before, only an error whose reason named "on CPU 0" was a finding: this one
    ended the run "aborted" with no findings, and `rmm-mp stress` exited 0."""
    def unlock_a_free_lock(machine: Machine) -> None:
        machine._host_ns.table.unlock(FREE_IDX)

    result, end = run_one(unlock_a_free_lock)
    assert not machine.dead
    assert result.ended == "crashed" and end == END_ABORT, (result.ended, end)
    texts = [f.text() for f in result.findings]
    assert [(f.checker, f.rule, f.cpu) for f in result.findings] == [("functional", "internal-error", 0)], texts
    finding = result.findings[0]
    assert "released granule 400 held by" in finding.message, texts
    # The file as findings._short names it: from the package's parent when the tests sit beside
    # the package they import (a checkout, an editable install), else its name alone (CI's
    # `pip install .`, where rmm_mp is in site-packages).
    assert finding.site.split(":")[0] in ("tests/stresstool/test_stress_internal_error.py",
                                          "test_stress_internal_error.py"), texts
    assert "(unlock_a_free_lock)" in finding.site, texts


def test_another_cpus_crash_is_no_finding_of_this_one(machine: Machine,
                                                      run_one: Callable[..., tuple[CpuResult, int]]) -> None:
    """CPU 1's RMM crashed (its reason recorded as the monitor records it), and CPU 0's next smc
    raises RmmInternalError with that reason: CPU 1 reports the crash, so CPU 0 makes no
    finding of it (a second report of one crash), and aborts the run."""
    reason = "RMM bug on CPU 1 in FID 0xc4000150(0x80000000): refcount of granule 3 would go from 0 to -1"

    def after_cpu1_crashed(m: Machine) -> None:
        m.control.mark_dead(reason)
        m.cpu(0).smc(0xC4000150, 0x80000000)

    result, end = run_one(after_cpu1_crashed)
    assert machine.dead and result.ended == "crashed" and end == END_ABORT, (result.ended, end)
    assert result.findings == [], [f.text() for f in result.findings]


def test_this_cpus_crash_is_a_crash_finding(machine: Machine, run_one: Callable[..., tuple[CpuResult, int]]) -> None:
    """CPU 0's RMM crashed (its reason recorded as the monitor records it, "RMM bug on CPU 0
    ..."), and the RmmInternalError reaches the worker: the finding is the functional `crash`
    with the machine's dead reason, as it was before internal errors on a live machine became
    findings too."""
    reason = "RMM bug on CPU 0 in FID 0xc4000150(0x80000000): refcount of granule 3 would go from 0 to -1"

    def crash(m: Machine) -> None:
        m.control.mark_dead(reason)
        m.cpu(0).smc(0xC4000150, 0x80000000)

    result, end = run_one(crash)
    assert [(f.checker, f.rule, f.message) for f in result.findings] == [("functional", "crash", reason)], \
        [f.text() for f in result.findings]


def test_a_crash_seen_before_its_reason_was_recorded_is_no_finding(machine: Machine,
                                                                   run_one: Callable[..., tuple[CpuResult, int]],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1's RMM crashed and has claimed the machine's dead word, but has not yet written its
    reason when CPU 0's smc sees the machine dead: CPU 0's wait for the reason runs out
    (REASON_WAIT_S, made short here), so its RmmInternalError reads the "not recorded" text;
    CPU 1 then records its reason. CPU 0 makes no finding: the machine was dead, and CPU 1
    reports the crash. Before, the dead reason (by then recorded) was not in CPU 0's text, so
    CPU 0 reported an internal-error with the "not recorded" text, a second report of one
    crash, worded as if the machine had been alive."""
    from rmm_mp.hw import control as hw_control

    reason = "RMM bug on CPU 1 in FID 0xc4000150(0x80000000): refcount of granule 3 would go from 0 to -1"
    monkeypatch.setattr(hw_control, "REASON_WAIT_S", 0.01)

    def crash_recorded_late(m: Machine) -> None:
        view = m.control.view
        assert view.cas_u32(hw_control.OFF_DEAD, 0, 2) == 0     # CPU 1's mark_dead, first half
        try:
            m.cpu(0).smc(0xC4000150, 0x80000000)
        finally:
            # ... and its second half, after CPU 0 gave up waiting for it
            data = reason.encode()
            m.control.buf[hw_control.OFF_REASON:hw_control.OFF_REASON + len(data)] = data
            view.store_u32(hw_control.OFF_DEAD_LEN, len(data))
            view.store_u32(hw_control.OFF_DEAD, 1)

    result, end = run_one(crash_recorded_late)
    assert machine.control.dead_reason() == reason
    assert result.ended == "crashed" and end == END_ABORT, (result.ended, end)
    assert result.findings == [], [f.text() for f in result.findings]
