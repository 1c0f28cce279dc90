"""Where a timed run's phases end, as the engine counts it: each at the running sum of the
phases' lengths rounded once (spec.phase_ends), so that the last ends at the run's length as
`workloads show` counts it (Workload.seconds, to the nanosecond).

CPU 0's engine loop runs in this process (cpu0_run) on a clock that never moves and answers
every "is the deadline reached?" with yes, noting the deadline it was compared with: each phase
ends at once, and the deadlines are the engine's own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cpu0_run import run_cpu0

from rmm_mp import Machine
from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve

START = 1_000_000


class _Reached(int):
    """A clock reading that is at or past every deadline it is compared with, noting each one."""

    seen: list[int] = []

    def __ge__(self, other: object) -> bool:
        assert isinstance(other, int)
        _Reached.seen.append(other)
        return True


def test_phase_ends_add_the_lengths_before_rounding() -> None:
    """Three phases of 1.4 ns end at 1, 3 and 4 ns (4.2 ns rounded), not 1, 2 and 3; --seconds 10
    over three equal phases ends at 10 s, not 9,999,999,999 ns."""
    assert spec.phase_ends([1.4e-9] * 3) == [1, 3, 4]
    assert spec.phase_ends([10 / 3] * 3)[-1] == 10 * 10**9
    assert spec.phase_ends([]) == []


@pytest.mark.parametrize("phases, seconds", [(3, 10.0), (3, 1e-8), (7, 1.0)])
def test_the_last_phase_ends_at_the_length_workloads_show_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  phases: int, seconds: float) -> None:
    """--seconds over equal phases: the engine added each phase's own rounded count, and 10 s
    over 3 phases ended 9,999,999,999 ns after the start (1e-8 s: 9 ns; 1 s over 7: 1,000,000,001
    ns), where `workloads show` says 10 s (Workload.seconds, counted by spec.nanoseconds)."""
    path = tmp_path / "w.toml"
    phase = '[[phase]]\nname = "p{}"\nseconds = 1\nactivities = {{ delegate-churn = 1 }}\n'
    path.write_text("cpus = 1\n" + "".join(phase.format(n) for n in range(phases)))
    w = resolve(spec.load(str(path)), seconds=seconds)
    assert w.seconds is not None
    _Reached.seen = []
    with Machine.create(w.platform, 1, time_slice=w.time_slice) as m:
        monkeypatch.setattr(time, "perf_counter_ns", lambda: _Reached(START))
        run_cpu0(m, w)
    # The engine compares the clock with each phase's deadline once (each phase ends at once).
    deadlines = [d - START for d in _Reached.seen]
    assert deadlines == spec.phase_ends(p.seconds or 0.0 for p in w.phases)
    assert deadlines[-1] == spec.nanoseconds(w.seconds), deadlines
