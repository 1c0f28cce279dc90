"""A deadlock's identity: what the shrinker keeps is the same deadlock (the same calls waiting for
the same kinds of lock, on whichever CPUs, at whichever granules), never another one; and a
schedule file recorded before deadlocks had an identity still replays.

A watchdog deadlock has no source site, so its key (checker, rule, site) was the same for every
deadlock: `--shrink` of a run with one deadlock could keep a run with another (with two bugs
injected, one bug's deadlock in place of the other's).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmm_mp.stress import StressConfig, run
from rmm_mp.stress import schedule as schedule_file
from rmm_mp.stress import shrink as shrinking
from rmm_mp.stress.findings import Finding
from rmm_mp.stress.report import StressReport
from rmm_mp.stress.shrink import shrink
from rmm_mp.stress.watchdog import CpuSnapshot, cycle_identity

RD, RTT = 0x8008F000, 0x80090000

CFG = StressConfig(workload="tables", seed=0, schedule="random", steps=3000, seconds=120,
                   inject=("data-create-rtt-before-rd",), checkers=("watchdog",))


def _snap(cpu: int, call: str, waits: int, holds: int) -> CpuSnapshot:
    states = ((holds, "RD" if holds == RD else "RTT"), (waits, "RD" if waits == RD else "RTT"))
    return CpuSnapshot(cpu, "blocked", call, waits, (holds,), (), states)


def _deadlock(snaps: list[CpuSnapshot], cycle: list[int], step: int) -> Finding:
    """A deadlock finding as watchdog.stuck_finding makes it from ``snaps``."""
    chain = " -> ".join(f"CPU {c}" for c in cycle + cycle[:1])
    return Finding("watchdog", "deadlock", f"CPUs wait for each other's locks: {chain}", cycle[0], "", "",
                   tuple(s.describe() for s in snaps), step, identity=cycle_identity(snaps, cycle))


def _report(finding: Finding, preemptions: int, switches: int) -> StressReport:
    assert finding.step is not None
    schedule = tuple((i * 10, i % 2) for i in range(switches + 1))
    return StressReport(CFG, (finding,), "aborted", 0.0, {}, steps=finding.step, switches=switches,
                        preemptions=preemptions, schedule=schedule)


CREATE = "RMI_DATA_CREATE_UNKNOWN(0x8008f000, 0x804df000, 0x402df000)"
DESTROY = "RMI_DATA_DESTROY(0x8008f000, 0x402db000)"


def test_a_deadlocks_identity_is_its_calls_and_the_locks_they_wait_for() -> None:
    """The identity names each CPU's call (without its arguments) and the kind of lock it waits
    for, the same whichever CPU runs which call, whichever CPU the cycle starts at, and whatever
    the data granule; another call in the cycle is another identity."""
    snaps = [_snap(0, CREATE, RD, RTT), _snap(1, DESTROY, RTT, RD)]
    swapped = [_snap(0, "RMI_DATA_DESTROY(0x8008f000, 0x4000f000)", RTT, RD),
               _snap(1, "RMI_DATA_CREATE_UNKNOWN(0x8008f000, 0x8054b000, 0x4034b000)", RD, RTT)]
    other = [_snap(0, "RMI_RTT_CREATE(0x8008f000, 0x80091000, 0x0, 0x1)", RD, RTT), _snap(1, DESTROY, RTT, RD)]
    identity = cycle_identity(snaps, [0, 1])
    assert identity == "RMI_DATA_CREATE_UNKNOWN waits for RD and RMI_DATA_DESTROY waits for RTT"
    assert cycle_identity(snaps, [1, 0]) == cycle_identity(swapped, [0, 1]) == identity
    assert cycle_identity(other, [0, 1]) != identity
    # Only key() reads it: the text, the JSON and so a schedule file are as they were.
    finding = _deadlock(snaps, [0, 1], 1352)
    assert finding.key() == ("watchdog", "deadlock", identity)
    assert identity not in finding.text() and set(finding.to_json()) == set(schedule_file._FINDING_KEYS)


def test_shrinking_a_deadlock_never_keeps_another_deadlock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replays stubbed with made-up reports: shrinking the DATA_CREATE_UNKNOWN / DATA_DESTROY
    deadlock refuses a candidate with a deadlock of RTT_CREATE and DATA_DESTROY (though it has
    no preemption at all), and keeps one with the same deadlock on the CPUs the other way round,
    at another data granule, with fewer preemptions. Every deadlock used to have the key
    (watchdog, deadlock, ""), so the other deadlock was kept."""
    original = _report(_deadlock([_snap(0, CREATE, RD, RTT), _snap(1, DESTROY, RTT, RD)], [0, 1], 1352), 34, 43)
    other = _report(_deadlock([_snap(0, "RMI_RTT_CREATE(0x8008f000, 0x80091000, 0x0, 0x1)", RD, RTT),
                               _snap(1, DESTROY, RTT, RD)], [0, 1], 900), 0, 1)
    same = _report(_deadlock([_snap(0, "RMI_DATA_DESTROY(0x8008f000, 0x4000f000)", RTT, RD),
                              _snap(1, "RMI_DATA_CREATE_UNKNOWN(0x8008f000, 0x8054b000, 0x4034b000)", RD, RTT)],
                             [1, 0], 1300), 20, 30)
    replies = iter([other, same] + [_report(original.findings[0], 40, 43)] * 40)
    monkeypatch.setattr(shrinking, "run", lambda cfg, **kwargs: next(replies))
    verdicts: list[str] = []
    result = shrink(original, max_attempts=4, on_attempt=lambda n, r, verdict: verdicts.append(verdict))
    assert verdicts[:2] == ["not kept: another deadlock (RMI_DATA_DESTROY waits for RTT and RMI_RTT_CREATE waits "
                            "for RD) than the one being shrunk (RMI_DATA_CREATE_UNKNOWN waits for RD and "
                            "RMI_DATA_DESTROY waits for RTT)", "kept"], verdicts
    assert result.report is same


OLD_SCHEDULE = {
    "format": "rmm-mp-schedule", "version": 3,
    "config": {"workload": "tables", "cpus": 2, "seed": 0, "steps": 1472, "pct_depth": 3, "time_slice": 400,
               "quiescent_every": 2000, "guests": True, "population": 2, "strategy": "replay",
               "inject": ["data-create-rtt-before-rd"], "checkers": ["watchdog"]},
    "switches": [[0, 0], [3, 1], [1229, 0], [1230, 1], [1231, 0], [1232, 1], [1233, 0], [1235, 1], [1241, 0],
                 [1243, 1], [1244, 0], [1245, 1], [1246, 0], [1247, 1], [1248, 0], [1249, 1], [1250, 0], [1255, 1],
                 [1256, 0], [1257, 1], [1260, 0], [1268, 1], [1269, 0], [1270, 1], [1273, 0], [1280, 1], [1287, 0],
                 [1313, 1], [1315, 0], [1317, 1], [1322, 0], [1323, 1], [1324, 0], [1326, 1], [1331, 0], [1335, 1],
                 [1337, 0], [1338, 1], [1339, 0], [1344, 1], [1346, 0], [1347, 1], [1349, 0], [1351, 1]],
    "result": {"steps": 1352, "preemptions": 34, "findings": [{
        "checker": "watchdog", "rule": "deadlock",
        "message": "CPUs wait for each other's locks: CPU 0 -> CPU 1 -> CPU 0", "cpu": 0, "call": "", "site": "",
        "details": ["CPU 0 (blocked): RMI_DATA_CREATE_UNKNOWN(0x8008f000, 0x804df000, 0x402df000), waiting for RD "
                    "0x8008f000; holds RTT 0x80090000",
                    "CPU 1 (blocked): RMI_DATA_DESTROY(0x8008f000, 0x402db000), waiting for RTT 0x80090000; holds RD "
                    "0x8008f000"],
        "step": 1352}], "shm_dir": "/dev/shm/audit_L8"}}
"""A schedule file as rmm-mp wrote it before deadlocks had an identity: the shrunk run of
`rmm-mp stress --inject data-create-rtt-before-rd --checkers watchdog --schedule random --shrink`
(seed 0), as saved then."""


@pytest.mark.multiprocess
def test_a_deadlock_schedule_recorded_before_the_identity_still_replays(tmp_path: Path) -> None:
    """The old file replays to "reproduced": its recorded deadlock has no identity, the replay's
    has one, and a replay compares the findings' text, which the identity is no part of."""
    path = tmp_path / "old.schedule.json"
    path.write_text(json.dumps(OLD_SCHEDULE))
    recorded = schedule_file.read(path)
    report = run(recorded.config)
    verdict = schedule_file.compare(str(path), recorded.findings, report)
    assert verdict.verdict == "reproduced", verdict.text() + report.text()
    [seen] = report.findings
    # Deterministic too, the deadlock's calls and locks name the realm of the population they are in.
    assert seen.identity == ("RMI_DATA_CREATE_UNKNOWN on realm T waits for RD of realm T and "
                             "RMI_DATA_DESTROY on realm T waits for RTT of realm T")
    assert recorded.findings[0].identity == ""
    # Saved again, it is the same file (the identity is not written).
    assert schedule_file.to_json(report)["result"]["findings"] == OLD_SCHEDULE["result"]["findings"]


def test_two_lockdep_cycles_are_two_problems_and_one_cycle_found_twice_is_one() -> None:
    """A lockdep cycle has no site either: its classes are its identity, so a shrinking of a run
    whose first finding is one cycle does not keep a run that found another (every cycle had the
    key ("lockdep", "cycle", "")), while the same cycle seen at other granules or steps is kept."""
    from rmm_mp.stress import classes, lockdep
    from rmm_mp.stress.lockdep import Edge

    def cycle_of(a: int, b: int, step: int) -> Finding:
        edges = {(a, b): Edge(a, b, 0, "RMI_X", "here.py:1", step, 0x1000 * step, 0x2000),
                 (b, a): Edge(b, a, 1, "RMI_Y", "there.py:2", step + 1, 0x2000, 0x1000 * step)}
        [found] = lockdep.analyse(edges)
        return found

    rd_l1 = cycle_of(classes.RD, classes.RTT_L0 + 1, 5)
    again = cycle_of(classes.RTT_L0 + 1, classes.RD, 90)
    rd_l2 = cycle_of(classes.RD, classes.RTT_L0 + 2, 5)
    assert rd_l1.key() == again.key(), (rd_l1.key(), again.key())
    assert rd_l1.key() != rd_l2.key(), rd_l1.key()


def test_a_leaked_locks_identity_is_the_waiting_call_and_the_lock_it_waits_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leaked lock has no site either (watchdog.stuck_finding): its identity is the waiting
    CPU's call and the kind of lock it waits for, so a shrinking keeps the same leak seen by
    another CPU at another granule, and refuses a leak met by another call (every leaked lock had
    the key ("watchdog", "leaked-lock", ""))."""
    from rmm_mp.stress import watchdog

    def leak(snap: CpuSnapshot) -> Finding:
        monkeypatch.setattr(watchdog, "snapshots", lambda machine, seg: [snap])
        monkeypatch.setattr(watchdog, "wait_cycle", lambda machine, snaps: [])
        monkeypatch.setattr(watchdog, "_holder", lambda machine, pa: (1, 1))
        monkeypatch.setattr(watchdog, "owner_text", lambda machine, word: "CPU 1")
        return watchdog.stuck_finding(None, None, 50)  # type: ignore[arg-type]

    first = leak(_snap(0, CREATE, RD, RTT))
    again = leak(_snap(1, "RMI_DATA_CREATE_UNKNOWN(0x8008f000, 0x8054b000, 0x4034b000)", RD, RTT))
    other = leak(_snap(0, DESTROY, RTT, RD))
    assert first.rule == "leaked-lock" and first.key() == again.key(), (first.key(), again.key())
    assert first.key() != other.key(), first.key()


def test_the_free_running_watchdogs_leaked_lock_has_the_same_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The free-running Watchdog's leaked lock is one problem with the deterministic scheduler's
    (stuck_finding's) when the same call waits for the same kind of lock: it had no identity, so
    every leaked lock it found had the key ("watchdog", "leaked-lock", "")."""
    from rmm_mp.stress import watchdog

    monkeypatch.setattr(watchdog, "_holder", lambda machine, pa: (1, 1))
    monkeypatch.setattr(watchdog, "owner_text", lambda machine, word: "CPU 1")
    dog = watchdog.Watchdog(None)  # type: ignore[arg-type]
    create, destroy = _snap(0, CREATE, RD, RTT), _snap(0, DESTROY, RTT, RD)
    found = dog._finding(("leaked-lock", (0,), ((RD, 1),)), [create])
    other = dog._finding(("leaked-lock", (0,), ((RTT, 1),)), [destroy])
    assert found.identity == watchdog.wait_identity(create) != "", found.identity
    assert found.key() != other.key(), found.key()
