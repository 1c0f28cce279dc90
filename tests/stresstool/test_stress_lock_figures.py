"""A stress run says how much lock contention it made: its CPUs' contended paths (replaced by
the stress instrumentation) count what the plain path counts, and the report adds the figures
up per CPU and in total (text line "lock contention: ...", JSON ``locks``)."""

from __future__ import annotations

import threading

import pytest

from rmm_mp import Machine
from rmm_mp.hw.granule import OTHER_CLASS, LockStats
from rmm_mp.stress import StressConfig, instrument, run
from rmm_mp.stress.report import StressReport
from rmm_mp.stress.shared import MODE_FREE, StressSegment

HELD = 200
"""Granule index another CPU holds while CPU 0 asks for it (an NS granule of the host platform)."""


def test_a_free_running_contended_acquisition_is_counted_with_its_wait(machine: Machine) -> None:
    """Free-running instrumentation: CPU 0 asks for a lock CPU 1 holds; a thread releases it
    after 50 ms. CPU 0's LockStats count one contended acquisition of the NS-copy class, with
    a wait of at least the 50 ms, as the plain contended path counts it. Before, the stress
    path replaced the plain one without counting: every stress run said 0 contended."""
    seg = StressSegment.create(machine.name, 2, MODE_FREE, 0, 0, 1)
    cpu = machine.cpu(0)
    probe = instrument.install(cpu, seg, watchdog=False)
    holder = machine.granule_table(2)       # CPU 1's lock word
    holder.lock(HELD)
    stats = cpu.granules.stats
    contended0, wait0 = stats.contended, stats.wait_ns
    releaser = threading.Timer(0.05, holder.unlock, (HELD,))
    try:
        releaser.start()
        cpu.granules.lock(HELD)
        cpu.granules.unlock(HELD)
    finally:
        releaser.join()
        instrument.uninstall(probe)
        seg.close()
    assert stats.contended - contended0 == 1
    assert stats.contended_by_class[OTHER_CLASS] >= 1
    assert stats.wait_ns - wait0 >= 40_000_000
    assert stats.max_wait_ns >= 40_000_000 and stats.max_wait_idx == HELD


def test_the_report_adds_up_the_cpus_lock_figures() -> None:
    """Two CPUs' figures (acquired, contended, wait_ns, max_wait_ns): the text line and the JSON
    total are their sums (the longest wait their maximum), the JSON keeps each CPU's. In a
    deterministic run the waits are null and the line says what contended means there."""
    locks = {0: (1000, 30, 500_000_000, 20_000_000), 1: (2500, 12, 300_000_000, 9_000_000)}
    free = StressReport(StressConfig(), (), "time", 1.0, {0: 5, 1: 5}, locks=locks)
    assert "lock contention: 42 of 3,500 lock acquisitions contended, 0.8 s waited (longest 20 ms)" \
        in free.text().splitlines()
    j = free.to_json()["locks"]
    assert (j["acquired"], j["contended"], j["wait_ns"], j["max_wait_ns"]) == (3500, 42, 800_000_000, 20_000_000)
    assert j["per_cpu"]["1"] == {"acquired": 2500, "contended": 12, "wait_ns": 300_000_000, "max_wait_ns": 9_000_000}
    det = StressReport(StressConfig(schedule="random", steps=10), (), "budget", 1.0, {0: 5, 1: 5}, locks=locks)
    assert "42 of 3,500 lock acquisitions contended (blocked on a held lock" in det.text()
    assert det.to_json()["locks"]["wait_ns"] is None
    assert StressReport(StressConfig(), (), "time", 1.0, {}).to_json()["locks"] is None


@pytest.mark.multiprocess
def test_a_deterministic_two_cpu_run_reports_its_contention() -> None:
    """A 2-CPU deterministic run (seed 0, random schedule, 3,000 steps of `mixed`): each CPU
    returns its figures, some acquisitions blocked on a lock the other held (the seed makes it
    so, every time), and the JSON total is the sum of the CPUs'."""
    report = run(StressConfig(cpus=2, seed=0, schedule="random", steps=3000, seconds=120))
    assert report.ok and sorted(report.locks) == [0, 1]
    j = report.to_json()["locks"]
    assert j["contended"] > 0
    assert j["acquired"] == sum(c["acquired"] for c in j["per_cpu"].values()) > j["contended"]
    assert j["contended"] == sum(c["contended"] for c in j["per_cpu"].values())


def test_the_lock_contention_waits_are_written_without_an_exponent() -> None:
    """Waits of a long run on many CPUs (1,234.5 s in total, the longest 11.6 s) and of a short
    one (20 us in total, the longest 2 us) read as plain figures to three significant digits:
    "1.23e+03 s" and "2e-05 s", what a %g format gives there, were hard to read in a line
    otherwise written with thousands separators."""
    def line(wait_ns: int, max_wait_ns: int) -> str:
        locks = {0: (5000, 10, wait_ns, max_wait_ns)}
        return StressReport(StressConfig(), (), "time", 1.0, {0: 5}, locks=locks).lock_contention()
    assert line(1_234_500_000_000, 11_600_000_000).endswith(", 1,230 s waited (longest 11,600 ms)")
    assert line(20_000, 2_000).endswith(", 0.00002 s waited (longest 0.002 ms)")
    assert line(179_000_000, 11_600_000).endswith(", 0.179 s waited (longest 11.6 ms)")


def test_the_stress_count_of_a_contended_acquisition_is_the_plain_paths(machine: Machine) -> None:
    """The plain contended path (GranuleTable._lock_contended) and the stress tool's
    replacements of it count through one method, LockStats.count_contended (they were two
    copies of the count). An acquisition of a lock held by another owner, which the plain path
    waits for (its waiter releases the lock at the first wait), must leave every LockStats field
    as count_contended leaves a fresh LockStats given the same granule, class and wait (bar
    ``acquired``, the fast path's): a field the plain path comes to count outside that method
    fails here, not as a stress figure silently missing it."""
    other = machine.granule_table(2)
    table = machine.granule_table(3)

    class Release:
        def wait(self, t: object, idx: int, holder: int) -> None:
            other.unlock(idx)

    other.lock(HELD)
    table.waiter = Release()
    table.lock(HELD, OTHER_CLASS)
    table.unlock(HELD)
    plain = table.stats
    assert plain.contended == 1
    copy = LockStats()
    copy.count_contended(HELD, OTHER_CLASS, plain.wait_ns)
    for name in LockStats.__slots__:
        if name != "acquired":
            assert getattr(copy, name) == getattr(plain, name), name


def test_a_cpu_process_takes_no_granule_lock_before_the_stress_set_up(machine: Machine) -> None:
    """A CPU process's lock figures (stress.worker.CpuResult.locks) count from stress_cpu's
    set-up: the sums are taken from the figures there, but the longest wait cannot be, so it is
    the process's own. It is the run's, as docs/stress.md says, only while what the process does
    before (attach the machine, bind its CPU: what rmm_mp.cpu_main does) takes no
    granule lock: both tables' figures must still be all zeros then."""
    from rmm_mp.stress.worker import _lock_figures
    attached = Machine.attach(machine.name)
    try:
        cpu = attached.cpu(1)
        assert _lock_figures((cpu.granules.stats, attached._host_ns.table.stats)) == (0, 0, 0, 0)
    finally:
        attached.close()


@pytest.mark.multiprocess
def test_a_cpus_failed_close_is_a_warning_in_the_text_and_the_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic 2-CPU run whose run_cpus result carries CPU 1's close failure
    (RunResult.warnings: its machine handle failed to close after its result was sent,
    cpu_exit.close_machine; simulated in the parent, as a real one needs a broken process) has a
    WARNING line under its summary, wrapped within 118 columns, and the JSON's ``warnings``
    names it; the run stays ok (the CPU's result arrived). Before, the stress report dropped
    RunResult.warnings: the failure was on the CPU's stderr only, where `rmm-mp run` reports it."""
    import dataclasses

    from rmm_mp.stress import runner

    real = runner.run_cpus
    what = "closing its machine handle failed after its result was sent: OSError: [Errno 5] simulated close failure"

    def with_a_warning(*args: object, **kwargs: object) -> object:
        return dataclasses.replace(real(*args, **kwargs), warnings={1: what})  # type: ignore[arg-type]
    monkeypatch.setattr(runner, "run_cpus", with_a_warning)
    report = run(StressConfig(workload="tables", cpus=2, seed=1, schedule="random", steps=40, seconds=60))
    assert report.ok and report.unreported == (), report.text()
    warning = f"CPU 1: {what} (its result arrived and counts; its process wrote the traceback to stderr)"
    assert report.to_json()["warnings"] == [warning]
    lines = report.text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("WARNING: "))
    assert lines[at - 1].endswith("; ended: budget") and all(len(line) <= 118 for line in lines[at:at + 2]), lines
    assert " ".join(line.strip() for line in lines[at:at + 2]) == f"WARNING: {warning}", lines
    quiet = StressReport(StressConfig(), (), "time", 1.0, {0: 5})
    assert quiet.to_json()["warnings"] == [] and "WARNING" not in quiet.text()
