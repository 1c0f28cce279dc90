"""The stress supervisor's look for dead CPU processes (runner._Supervisor._a_cpu_died)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rmm_mp.stress import runner
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.runner import _Supervisor
from rmm_mp.stress.shared import DONE, READY


class _Area:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def binding(self) -> int:
        return self.pid

    def release(self) -> None:
        pass


class _Cpu1:
    """CPU 1 of a stress segment, which finishes (sets DONE) and exits right after it is first
    looked at, by its status or its process: the race of a CPU ending its run just as the
    supervisor looks."""

    def __init__(self) -> None:
        self.statuses = [READY, READY]
        self.gone = False
        self.looked = False

    def _look(self) -> None:
        if not self.looked:
            self.looked = True
            self.statuses[1], self.gone = DONE, True

    def status(self, cpu: int) -> int:
        status = self.statuses[cpu]
        if cpu == 1:
            self._look()
        return status

    def alive(self, pid: int) -> bool:
        if pid != 101:
            return True
        alive = not self.gone
        self._look()
        return alive


def test_a_cpu_that_finishes_as_it_is_looked_at_did_not_die(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1 sets DONE and exits while the supervisor looks at it: a normal end, not a death.
    The look read the status first, saw READY, then the process gone, and took it for dead:
    the run was aborted, its final invariant check skipped, though it had found nothing. The
    process is looked at first now, then the status, which a process that ends normally sets
    before it goes. A CPU really dead (gone, status not DONE) still counts."""
    seg = _Cpu1()
    machine = SimpleNamespace(cpu_area=lambda cpu: _Area(100 + cpu))
    monkeypatch.setattr(runner.process, "alive", seg.alive)
    sup = _Supervisor(machine, seg, StressConfig(cpus=2, checkers=()), None, (), None)  # type: ignore[arg-type]
    assert not sup._a_cpu_died()
    assert seg.looked and not sup._a_cpu_died()      # finished: DONE and gone
    seg.statuses[1] = READY                          # gone without setting DONE: dead
    assert sup._a_cpu_died()
