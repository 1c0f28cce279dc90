"""A long lifecycle run carries a bounded amount of guest output back to the parent: the CPU that
tears an instance down keeps the guest's output (console tail, last LOG records) only when the
instance failed, and only for the first MAX_OUTPUTS_PER_CPU of them (workload.cpustate.Host.reap).

The run is CPU 0's plan in this process (cpu0_run), so that the cap can be lowered for the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cpu0_run import run_cpu0
from realm_guests import failing_guest

from rmm_mp import Machine
from rmm_mp.workload import cpustate, spec
from rmm_mp.workload.realms import outcome
from rmm_mp.workload.resolve import resolve


def test_only_the_first_failed_lifecycle_instances_keep_their_output(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two lifecycle realms on one CPU, one whose guest REPORTs failure 7 and one running hello
    (passes), rebuilt for 300 steps with the cap lowered to 2: every failed instance after the
    second, and every instance that passed, reaches the CpuResult without output; the first two
    failed ones have theirs (no console bytes, no LOG record: the failing guest only REPORTs).
    The failed ones after the second, and only they, are marked output_dropped, which their
    outcome carries (before, nothing told them from a realm with no output kept for no reason)."""
    monkeypatch.setattr(cpustate, "MAX_OUTPUTS_PER_CPU", 2)
    (tmp_path / "fails.s").write_text(failing_guest(7, 0x55))
    path = tmp_path / "w.toml"
    path.write_text('cpus = 1\niterations = 300\nactivities = { lifecycle = 1 }\n'
                    '[[realm]]\nname = "bad"\nguest = "fails.s"\nlifecycle = true\n'
                    '[[realm]]\nname = "hi"\nguest = "hello"\nlifecycle = true\n')
    w = resolve(spec.load(str(path)))
    with Machine.create(w.platform, 1, time_slice=w.time_slice) as m:
        result = run_cpu0(m, w)
    bad = [f for f in result.finished if f.name.startswith("bad")]
    good = [f for f in result.finished if f.name.startswith("hi")]
    assert len(bad) > 2 and good, [f.name for f in result.finished]
    assert all(f.failed for f in bad) and not any(f.failed for f in good)
    assert [f.output is not None for f in bad] == [True, True] + [False] * (len(bad) - 2)
    assert bad[0].output is not None and (bad[0].output.console_bytes, bad[0].output.log_count) == (0, 0)
    assert all(f.output is None for f in good)
    assert [f.output_dropped for f in bad] == [False, False] + [True] * (len(bad) - 2)
    assert not any(f.output_dropped for f in good)
    assert [outcome(f, [], running=False).output_dropped for f in bad[1:3]] == [False, True]


def test_a_cpu_lists_the_first_instances_of_each_outcome_and_folds_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three lifecycle realms on one CPU for 300 steps: one whose guest REPORTs failure 7, one
    whose guest reads a protected IPA outside its RAM (a vCPU error), one running hello. With
    the list cap lowered to 2 and the vCPU error cap to 3, the CpuResult lists 2 instances that
    passed and 2 that failed, keeps 3 vCPU errors and counts the rest; every other instance is
    in one fold per realm and outcome, whose counts add up with the listed ones to the realms
    the CPU destroyed, and whose counters are the sums; its counter "vCPU errors not kept" says
    how many error lines it did not keep, and the stray fold's first failure gives its vCPU
    error's message. Before, the CPU kept one record per
    instance and one line per vCPU error for the whole run: a 4-minute kvm-lifecycle run on 2
    CPUs listed 30,133 instances, and the CPU processes grew by about 0.5 KiB each."""
    monkeypatch.setattr(cpustate, "MAX_LISTED_PER_CPU", 2)
    monkeypatch.setattr(cpustate, "MAX_ERRORS_PER_CPU", 3)
    (tmp_path / "fails.s").write_text(failing_guest(7, 0x55))
    # RSI_IPA_STATE_SET(0x1000, 0x2000, EMPTY): a change to EMPTY outside RAM fails the vCPU.
    (tmp_path / "strays.s").write_text("start:\n    mov x0, =0xC4000197\n    mov x1, =0x1000\n    mov x2, =0x2000\n"
                                       "    mov x3, #0\n    mov x4, #0\n    smc #0\n    b start\n")
    path = tmp_path / "w.toml"
    path.write_text('cpus = 1\niterations = 300\nactivities = { lifecycle = 1 }\n'
                    '[[realm]]\nname = "bad"\nguest = "fails.s"\nlifecycle = true\n'
                    '[[realm]]\nname = "stray"\nguest = "strays.s"\nlifecycle = true\n'
                    '[[realm]]\nname = "hi"\nguest = "hello"\nlifecycle = true\n')
    w = resolve(spec.load(str(path)))
    with Machine.create(w.platform, 1, time_slice=w.time_slice) as m:
        result = run_cpu0(m, w)
    assert [f.failed for f in result.finished].count(True) == 2
    assert [f.failed for f in result.finished].count(False) == 2
    folds = {(f.name, f.ok): f for f in result.folded}
    assert set(folds) == {("bad", False), ("stray", False), ("hi", True)}, folds
    destroyed = result.counters["realms destroyed"]
    assert len(result.finished) + sum(f.instances for f in folds.values()) == destroyed > 30
    stray = folds["stray", False]
    assert stray.counters["vcpu_errors"] == stray.instances and "a vCPU failed" in stray.first
    # The fold's first failure gives its vCPU error's message, which the CPU kept (it read
    # "a vCPU failed: 1 vCPU errors", the message unused in the CPU's list).
    assert "RIPAS change to EMPTY of [0x1000, 0x2000) starts outside the realm's RAM" in stray.first, stray.first
    assert len(result.errors) == 3
    assert result.errors_dropped == sum(1 for f in result.finished if f.name.startswith("stray")) \
        + stray.instances - 3
    # The report counts the lines not kept (its per-CPU counters, text and JSON): no line said so.
    assert result.counters["vCPU errors not kept"] == result.errors_dropped
    assert folds["hi", True].counters["entries"] >= folds["hi", True].instances
