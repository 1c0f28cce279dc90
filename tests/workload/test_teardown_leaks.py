"""The checks after a run's teardown notice a granule the teardown did not give back.

The invariant checker alone cannot: a DELEGATED granule nobody owns is a valid state (and an
undelegated granule the host forgot to free is NS). aftermath._leaks adds what must hold once every
realm is gone: every granule NS and the host allocator empty. These tests make the parent's
teardown (which runs in the test's process) skip one step of one granule, as a bug would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from rmm_mp.host import realm_teardown
from rmm_mp.machine import Cpu
from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload

pytestmark = pytest.mark.multiprocess

Release = Callable[[Cpu, object, int], None]


def _skip(undelegate: bool, free: bool) -> Callable[[Release], Release]:
    """A release_granule that, for the first granule it is given, only undelegates and/or frees."""
    def wrap(real: Release) -> Release:
        skipped: list[int] = []

        def release(cpu: Cpu, alloc: object, pa: int) -> None:
            if skipped:
                return real(cpu, alloc, pa)
            skipped.append(pa)
            if undelegate:
                cpu.smc(realm_teardown.UNDELEGATE, pa)
            if free:
                alloc.free(pa)      # type: ignore[attr-defined]
        return release
    return wrap


@pytest.mark.parametrize("undelegate, free, shown", [
    (False, False, ["after teardown granules are left in states {'DELEGATED': 1}",
                    "after teardown the host allocator still holds 1 granules and 0 VMIDs"]),
    (False, True, ["after teardown granules are left in states {'DELEGATED': 1}"]),
    (True, False, ["after teardown the host allocator still holds 1 granules and 0 VMIDs"]),
], ids=["neither", "freed-not-undelegated", "undelegated-not-freed"])
def test_a_granule_the_teardown_leaks_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    undelegate: bool, free: bool, shown: list[str]) -> None:
    """A teardown that neither undelegates nor frees one granule, or does only one of the two: each
    omission is a problem of its own, the invariants still hold, and the run is not ok."""
    monkeypatch.setattr(realm_teardown, "release_granule", _skip(undelegate, free)(realm_teardown.release_granule))
    path = tmp_path / "w.toml"
    path.write_text('iterations = 8\ncpus = 1\nactivities = { run = 1 }\n[[realm]]\nname = "r"\nguest = "hello"\n')
    report = run_workload(resolve(spec.load(str(path))), RunOptions(progress=False))
    assert list(report.problems) == shown
    assert report.invariants is not None and report.invariants.ok      # the checker alone sees nothing
    assert not report.ok


def test_a_complete_teardown_leaves_nothing(tmp_path: Path) -> None:
    """The same one-realm run with the real teardown: no problem, and the run is ok."""
    path = tmp_path / "w.toml"
    path.write_text('iterations = 8\ncpus = 1\nactivities = { run = 1 }\n[[realm]]\nname = "r"\nguest = "hello"\n')
    report = run_workload(resolve(spec.load(str(path))), RunOptions(progress=False))
    assert not report.problems and report.ok
