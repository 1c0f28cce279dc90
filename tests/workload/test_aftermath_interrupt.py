"""A Ctrl-C that lands in `rmm-mp run`'s work after the CPUs' run right after a granule lock's
compare-and-swap, leaving the lock word held by the parent (as a signal anywhere between a lock
and its unlock does): the run still ends, says what it did not do, exits 1 and leaves no shared
memory; and the facts that keep a lock so left from being waited for: after the CPUs' run the
parent locks granules in two kinds of step only, each realm's read (as the host, on that
realm's own pages) and the teardown (as CPU 0, the last step to lock any).

Test-only. The parent's post-run steps were read for a hang (a later step, or the parent under
its other lock owner, waiting for ever on a lock the cut step left held by its own live
process): none was found, and these tests keep it so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmm_mp.hw import segment

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parents[2]

WORKLOAD = """\
cpus = 2
iterations = 40
activities = { run = 1 }

[[realm]]
name = "att"
guest = "attest"
ram = "4M"
instances = 2
"""
"""Two resident attest realms: each one's read after the run copies its token from its shared
page through Machine.ns_read, the host's lock (the only post-run step that locks as the host)."""

_DRIVER = r'''
import json, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with it ignored
import rmm_mp.cli
from rmm_mp import interrupts
from rmm_mp.hw import granule, segment
cut_owner, cut_nth, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
after_run = []      # set once the CPUs' run is over (run_cpus's on_end: Interrupts.run_over)
steps = []          # [name, read] of every Interrupts.step after the run
taken = []          # [step, "host" or "cpu", granule] of every lock the parent took after the run
state = {"step": -1, "fired": 0}

def _step(self, fn, read=False, _real=interrupts.Interrupts.step):
    if not after_run:
        return _real(self, fn, read)
    steps.append([getattr(fn, "__name__", "?"), read])
    state["step"] = len(steps) - 1
    try:
        return _real(self, fn, read)
    finally:
        state["step"] = -1
interrupts.Interrupts.step = _step

def _over(self, _real=interrupts.Interrupts.run_over):
    after_run.append(1)
    _real(self)
interrupts.Interrupts.run_over = _over

def _init(self, *a, _real=granule.GranuleTable.__init__, **k):
    _real(self, *a, **k)
    def cas(offset, expected, new, _cas=self._cas):
        old = _cas(offset, expected, new)
        if after_run and expected == 0 and old == 0:        # an acquisition (unlocks swap owner -> 0)
            who = "host" if new & granule.HOST_OWNER_FLAG else "cpu"
            taken.append([state["step"], who, offset >> 3])
            if who == cut_owner and sum(1 for t in taken if t[1] == who) == cut_nth:
                state["fired"] = 1
                sys.stderr.write(f"test driver: cut after locking granule {offset >> 3} as {who}\n")
                signal.raise_signal(signal.SIGINT)      # its handler runs here, as a Ctrl-C's would
        return old
    self._cas = cas
granule.GranuleTable.__init__ = _init

try:
    rmm_mp.cli.main(sys.argv[5:], prog_name="rmm-mp")
finally:
    # Still in the process: what it left now, the reaper (hw.reaper) would unlink only after its end.
    left = [m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()]
    with open(record, "w") as out:
        json.dump({"steps": steps, "taken": taken, "fired": state["fired"], "pid": os.getpid(), "left": left}, out)
'''


def _run(tmp_path: Path, cut_owner: str = "", cut_nth: int = 0,
         args: tuple[str, ...] = ("run", "w.toml", "--no-progress")) -> tuple[subprocess.CompletedProcess[str], dict]:
    """rmm-mp ``args`` (`run` of WORKLOAD) in a child, whose parent gets a Ctrl-C right after
    its ``cut_nth`` granule lock as ``cut_owner`` ("host", "cpu") after the CPUs' run (none
    when 0). A child that hangs fails the test at the timeout (subprocess.run kills it)."""
    (tmp_path / "w.toml").write_text(WORKLOAD)
    record = tmp_path / "record.json"
    proc = subprocess.run([sys.executable, "-c", _DRIVER, cut_owner or "-", str(cut_nth), str(record), "--",
                           *args], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    facts = json.loads(record.read_text())
    assert facts["left"] == [], "shared memory left to the reaper: the run did not unlink it"
    assert not [m for m in segment.list_machines() if m.creator_pid == facts["pid"]], "shared memory left"
    return proc, facts


def test_after_the_run_the_parent_locks_only_in_the_reads_and_the_teardown_last(tmp_path: Path) -> None:
    """What keeps a lock a cut step left held from being waited for: as the host, only the
    realms' reads lock, each its own realm's pages (no other read locks them); as CPU 0 only
    the teardown does, which is skipped once a step was cut, and no step after it locks at all.
    A new post-run step that locks a granule breaks this: then a Ctrl-C right after one of its
    compare-and-swaps must be shown not to hang the run (the tests below)."""
    proc, facts = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps, taken = facts["steps"], facts["taken"]
    assert taken and all(step >= 0 for step, _, _ in taken), "a post-run lock outside every step"
    names = {step: steps[step][0] for step, _, _ in taken}
    host = [(step, idx) for step, who, idx in taken if who == "host"]
    cpu = [(step, idx) for step, who, idx in taken if who == "cpu"]
    assert host and {names[step] for step, _ in host} == {"read"} and all(steps[s][1] for s, _ in host)
    by_read: dict[int, set[int]] = {}
    for step, idx in host:
        by_read.setdefault(step, set()).add(idx)
    assert len(by_read) == 2, by_read            # one read per attest realm
    first, second = by_read.values()
    assert not first & second
    assert cpu and {names[step] for step, _ in cpu} == {"teardown"} and not any(steps[s][1] for s, _ in cpu)
    teardown = cpu[0][0]
    assert max(step for step, _, _ in taken) == teardown


def test_after_a_stress_run_the_parent_locks_no_granule(tmp_path: Path) -> None:
    """`rmm-mp stress`'s work after the CPUs' run (the lock-order edges and their analysis, the
    final invariant check, the report) reads the machine without a granule lock: a signal there
    can leave none held."""
    proc, facts = _run(tmp_path, args=("stress", "--cpus", "2", "--seconds", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert facts["steps"] and facts["taken"] == [], facts


@pytest.mark.parametrize("owner, nth, undone", [
    ("host", 1, ["1 of 2 live realm instances not read: interrupted (Ctrl-C)",
                 "teardown not done: interrupted (Ctrl-C); the leak checks after it were not made"]),
    ("cpu", 1, ["teardown not done: interrupted (Ctrl-C); the leak checks after it were not made"]),
    ("cpu", 100, ["teardown not done: interrupted (Ctrl-C); the leak checks after it were not made"]),
], ids=["first-read", "teardown-start", "teardown-middle"])
def test_a_ctrl_c_right_after_a_post_run_lock_still_ends_the_run(tmp_path: Path, owner: str, nth: int,
                                                                 undone: list[str]) -> None:
    """Ctrl-C right after the compare-and-swap of the first realm read's lock (the host's, the
    lock word left held) or of the teardown's first or 100th (CPU 0's, inside an RMM call):
    the later read still reads its own realm, the teardown is skipped, and the run ends with
    its report, marked interrupted after the run, exit status 1, no traceback, and no shared
    memory left."""
    proc, facts = _run(tmp_path, owner, nth)
    assert facts["fired"], proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "INTERRUPTED: the run ended, then the work after it was stopped (Ctrl-C)" in proc.stdout, proc.stdout
    for line in undone:
        assert f"  {line}\n" in proc.stdout, proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "result: FAILED: interrupted", proc.stdout
    if owner == "host":             # the other realm's read took its own page's lock all the same
        assert len([t for t in facts["taken"] if t[1] == "host"]) == 2, facts["taken"]
