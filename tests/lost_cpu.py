"""Helpers for `rmm-mp run` tests of a CPU whose process died at the run's end: its result
is dropped and it is reported killed, the work it did (and published as it went) done; and
the lifecycle realms such a test gives that CPU, kept to it so that it surely does that work."""

from __future__ import annotations

import dataclasses

import pytest

from rmm_mp.cpu_outcome import CpuFailure
from rmm_mp.workload import run
from rmm_mp.workload.resolve import Workload

LOST = 1
"""The CPU whose result is dropped."""


def drop_the_lost_cpus_result(monkeypatch: pytest.MonkeyPatch) -> list[run.CpuResult]:
    """Make the run's run_cpus drop CPU LOST's result and report it killed (SIGKILL), as if its
    process had died at the run's end; returns the list the dropped result is put in."""
    real = run.run_cpus
    dropped: list[run.CpuResult] = []

    def one_lost(*args: object, **kwargs: object) -> run.RunResult:
        done = real(*args, **kwargs)      # type: ignore[arg-type]
        dropped.append(done.results[LOST])
        results = {cpu: r for cpu, r in done.results.items() if cpu != LOST}
        failure = CpuFailure(LOST, "was killed by SIGKILL", "", ())
        return dataclasses.replace(done, results=results, failures=(*done.failures, failure))
    monkeypatch.setattr(run, "run_cpus", one_lost)
    return dropped


def pinned_realms(name: str, guest: str, extra: str = "") -> str:
    """Two [[realm]] entries of lifecycle realms running ``guest`` (``extra`` lines added to each):
    ``{name}0``, whose vCPUs only CPU 0 runs, and ``{name}1``, whose vCPUs only CPU LOST runs
    (``cpus``). The round-robin of owners gives each to the CPU it runs on (check with
    owned_where_run), so CPU LOST's run queue holds its own realm's vCPUs alone and every step
    it takes builds, enters or tears down that realm, whatever CPU 0 does. One realm of two
    instances on both CPUs left it to timing: CPU 0 could take the vCPU of CPU LOST's instance
    and be descheduled holding it, while CPU LOST ran CPU 0's instance to its end (CPU 0's to
    tear down) and spent its other steps on an empty queue, tearing nothing down."""
    return "".join(f'[[realm]]\nname = "{name}{cpu}"\nguest = "{guest}"\nlifecycle = true\ncpus = [{cpu}]\n{extra}'
                   for cpu in (0, LOST))


def owned_where_run(w: Workload) -> Workload:
    """``w``, after checking that pinned_realms' two realms are owned by the CPUs they run on."""
    assert w.owners == (((0, 0), 0), ((1, 0), LOST)), w.owners
    return w
