"""A helper for `rmm-mp run` tests of a CPU whose process died at the run's end: its result
is dropped and it is reported killed, the work it did (and published as it went) done."""

from __future__ import annotations

import dataclasses

import pytest

from rmm_mp.cpu_outcome import CpuFailure
from rmm_mp.workload import run

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
