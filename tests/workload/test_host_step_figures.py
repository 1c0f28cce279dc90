"""A host step's latency record (HOST_RUN, HOST_DELEGATE_CHURN ...) is the step's own time:
the recorder's flush, which runs at the end of the first RMI call 50 ms after the previous one
and so inside some step, is measuring's work and is left out (docs/latency.md).

In this process, on a fake clock: every clock read moves it on by 1 us, and a flush moves it
on by 1 s more, so a step that counted a flush would read at least 1 s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cpu0_run import run_cpu0

from rmm_mp import Machine
from rmm_mp.stats import histogram
from rmm_mp.stats.calls import HOST_BASE, name
from rmm_mp.stats.report import collect
from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve

SLOW_FLUSH_NS = 1_000_000_000
STEPS = 40


class _FakeClock:
    """A monotonic clock that moves on by 1 us at each read (a slow flush moves ``now`` on)."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def test_a_flush_inside_a_host_step_is_not_the_steps_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """delegate-churn on 1 CPU for 40 steps, run in this process with a flush that takes 1 s
    of the fake clock: the first RMI call of the run flushes (and, as the clock has jumped
    past the next flush time, so does every later one), inside its step; yet every step
    reads less than the flush alone."""
    clock = _FakeClock()
    monkeypatch.setattr(time, "perf_counter_ns", clock)    # before the machine: EL3 keeps the clock it finds
    flushes: list[int] = []
    real_flush = histogram.Recorder.flush

    def slow_flush(self: histogram.Recorder, now_ns: int) -> None:
        real_flush(self, now_ns)
        if now_ns:      # a flush at the end of a call, not Cpu.flush_statistics after the run
            clock.now += SLOW_FLUSH_NS
            flushes.append(now_ns)

    monkeypatch.setattr(histogram.Recorder, "flush", slow_flush)
    path = tmp_path / "w.toml"
    path.write_text(f"iterations = {STEPS}\ncpus = 1\nactivities = {{ delegate-churn = 1 }}\n")
    w = resolve(spec.load(str(path)))
    with Machine.create(w.platform, 1, time_slice=w.time_slice) as m:
        flushed: list[Any] = []
        run_cpu0(m, w, after=lambda cpu: (cpu.flush_statistics(), flushed.append(collect(m, [0])[0])))
        stats = flushed[0]
    host = {name(slot): s for slot, s in stats.items() if slot >= HOST_BASE}
    assert list(host) == ["HOST_DELEGATE_CHURN"]
    steps = host["HOST_DELEGATE_CHURN"]
    assert steps.count == STEPS
    assert len(flushes) >= STEPS     # every step has at least one RMI call, each one flushing
    assert steps.max_ns < SLOW_FLUSH_NS, steps.max_ns
