"""The bug-injection catalog: known locking mistakes, switched on by name, each with the checker
that must catch it.

A bug is installed at start-up in every CPU process of a run that asks for it, by swapping one
handler (rmm.dispatch.replace_handler) or one library function (a class or module attribute)
for its buggy copy in stress.bugs_rmi. Nothing on any path tests whether a bug is on, so the
catalog costs an ordinary run nothing; ``Probe.restore`` takes the swap back.

To add a bug: write the wrong copy in bugs_rmi.py (mark the mistake with ``# BUG:``), add a
Bug here naming the checker that must catch it and a workload that reaches the code, and add
its recorded seed to tests/stresstool/test_stress_bugs.py (docs/stress.md, "Adding a bug").

This module owns the catalog. It must not contain buggy code itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.hw.granule import GranuleTable
from rmm_mp.rmm import dispatch, s2tt
from rmm_mp.stress import bugs_rmi as B
from rmm_mp.stress.shared import BUG_SLOTS

if TYPE_CHECKING:
    from rmm_mp.stress.probe import Patches

F = RmiFid


@dataclass(frozen=True)
class Bug:
    """One catalogued mistake.

    Attributes:
        name: what --inject takes.
        summary: the mistake, in one line.
        checker: the checker that catches it (stress.findings.CHECKERS).
        rule: what that checker reports (a locking rule, an invariant, deadlock ...).
        workload: a bundled workload that reaches the buggy code quickly.
        target: what is swapped: ("handler", fid) or (owner, attribute name).
        replacement: the buggy function.
        also: the other checkers that report it on their own (`--checkers NAME`), each with
            what it reports: ``(checker, rule)``. A clean run with ``checker`` off but one of
            these on tested the bug all the same (StressReport.text's checker-off line).
    """

    name: str
    summary: str
    checker: str
    rule: str
    workload: str
    target: tuple[Any, Any]
    replacement: Callable[..., Any]
    also: tuple[tuple[str, str], ...] = ()

    def catchers(self) -> tuple[str, ...]:
        """Every checker that reports the bug on its own: ``checker``, then ``also``'s."""
        return (self.checker, *(checker for checker, _ in self.also))

    def install(self, probe: "Patches", count: "Counter | None" = None) -> None:
        """Swap the buggy copy in; with ``count``, call it with the bug's name each time the copy
        runs (a run whose workload never reaches the swapped code tests nothing of the bug)."""
        owner, attr = self.target
        replacement = self.replacement
        if count is not None:
            replacement = _counted(self.name, replacement, count)
        if owner == "handler":
            previous = dispatch.replace_handler(attr, replacement)
            assert previous is not None
            probe.on_restore(lambda: dispatch.replace_handler(attr, previous))
        else:
            probe.patch(owner, attr, replacement)

    def target_text(self) -> str:
        """What the bug replaces: "the RMI_REC_CREATE handler", "GranuleTable.lock_two"."""
        return _target_text(self.target)


Counter = Callable[[str], None]
"""What a bug calls with its name each time its buggy copy runs (Bug.install): the counting is
the caller's, a stress CPU's one thread (counter) or explore's two call threads of a pair, which
count under a lock and only the pair's own calls (stress.explore_cli)."""


def counter(calls: dict[str, int]) -> Counter:
    """A Counter adding one to ``calls[name]``, for one thread (a read, then a write)."""
    def count(name: str) -> None:
        calls[name] = calls.get(name, 0) + 1
    return count


def _both(first: Counter, second: Counter) -> Counter:
    """A Counter that counts with ``first``, then ``second``."""
    def count(name: str) -> None:
        first(name)
        second(name)
    return count


def _counted(name: str, function: Callable[..., Any], count: Counter) -> Callable[..., Any]:
    """``function`` calling ``count(name)`` as it runs. A plain function, so that as a class
    attribute (GranuleTable.lock_two) it still binds as a method; it is no handler for a
    finding's site (stress.findings), which names the buggy copy it calls."""
    @functools.wraps(function)
    def counted(*args: Any, **kwargs: Any) -> Any:
        count(name)
        return function(*args, **kwargs)
    return counted


BUGS: dict[str, Bug] = {b.name: b for b in (
    Bug("rec-create-no-rd-lock", "REC_CREATE uses the RD (refcount, REC count, RIM) without locking it",
        "ownership", "unlocked read", "lifecycle", ("handler", F.RMI_REC_CREATE), B.rec_create_no_rd_lock),
    Bug("lock-two-unordered", "two external granules are locked in argument order, not address order",
        "lockdep", "rule 2", "tables", (GranuleTable, "lock_two"), B.lock_two_unordered),
    Bug("walk-unlock-parent-first", "the RTT walk releases the parent table before it locks the child",
        "lockdep", "rule 5", "tables", (s2tt, "walk"), B.walk_unlock_parent_first),
    Bug("rec-enter-not-running", "REC_ENTER runs the REC without taking its running reference",
        "ownership", "unlocked read", "realms", ("handler", F.RMI_REC_ENTER), B.rec_enter_not_running),
    Bug("rtt-destroy-refcount-unlocked", "RTT_DESTROY checks the child table's refcount before locking it",
        "ownership", "unlocked read", "tables", ("handler", F.RMI_RTT_DESTROY), B.rtt_destroy_refcount_unlocked),
    Bug("psci-complete-unordered", "PSCI_COMPLETE locks the calling REC, then the target, whatever their addresses",
        "lockdep", "rule 2", "lifecycle", ("handler", F.RMI_PSCI_COMPLETE), B.psci_complete_unordered),
    Bug("delegate-state-before-pas", "DELEGATE changes the state before EL3 has moved the granule to the Realm PAS",
        "ownership", "transition", "lifecycle", ("handler", F.RMI_GRANULE_DELEGATE), B.delegate_state_before_pas),
    Bug("rd-refcount-plain-rmw", "REC_DESTROY drops the RD's refcount with a plain read and store, not an atomic",
        "ownership", "unlocked read", "lifecycle", ("handler", F.RMI_REC_DESTROY), B.rec_destroy_plain_rmw,
        # The lost update leaves the RD's refcount off its REC count: free-running within
        # seconds, deterministic too (--checkers invariants --schedule random --seed 5, step 13,290).
        also=(("invariants", "rd-refcount"),)),
    Bug("rtt-create-parent-released-early", "RTT_CREATE releases the parent table before it writes the TABLE entry",
        "invariants", "rtt-refcount", "rtts", ("handler", F.RMI_RTT_CREATE), B.rtt_create_parent_released_early,
        also=(("ownership", "unlocked write"),)),
    Bug("data-create-copy-under-rd", "DATA_CREATE copies the NS source page while it holds the RD",
        "lockdep", "rule 8", "lifecycle", ("handler", F.RMI_DATA_CREATE), B.data_create_copy_under_rd),
    Bug("map-unprotected-leaks-lock", "RTT_MAP_UNPROTECTED returns with the table still locked when the entry is taken",
        "watchdog", "leaked-lock", "tables", ("handler", F.RMI_RTT_MAP_UNPROTECTED), B.map_unprotected_leaks_lock),
    Bug("data-create-rtt-before-rd", "DATA_CREATE_UNKNOWN locks root RTT 0 before the RD and the DATA granule",
        "lockdep", "rule 1", "tables", ("handler", F.RMI_DATA_CREATE_UNKNOWN), B.data_create_unknown_rtt_first,
        also=(("watchdog", "deadlock"), ("ownership", "unlocked read"))),
    Bug("data-destroy-wipe-after-rtt",
        "DATA_DESTROY releases the level-3 table before it locks and wipes the DATA granule",
        "lockdep", "rule 4", "tables", ("handler", F.RMI_DATA_DESTROY), B.data_destroy_wipe_after_rtt),
    Bug("rec-destroy-aux-after-rec", "REC_DESTROY releases the REC before it scrubs and releases its aux granules",
        "lockdep", "rule 4", "lifecycle", ("handler", F.RMI_REC_DESTROY), B.rec_destroy_aux_after_rec),
    Bug("lock-two-check-late", "lock_two locks both granules before it checks either state",
        "lockdep", "rule 3", "mixed", (GranuleTable, "lock_two"), B.lock_two_check_late),
)}
BUG_INDEX: dict[str, int] = {name: i for i, name in enumerate(BUGS)}
"""Each bug's index in the catalogue: where the stress segment counts its calls on a CPU
(stress.shared C_BUGS), so that a CPU that returns no result still has them counted."""
if len(BUGS) > BUG_SLOTS:
    # Not an assert, gone under python -O: a bug past the slots would raise its ValueError
    # (StressSegment.count_bug) inside the RMM function it patches, at its first call.
    raise ImportError(f"stress.bugs: {len(BUGS)} bugs, but the stress segment counts the calls of "
                      f"{BUG_SLOTS} (stress.shared BUG_SLOTS): enlarge its CPU words")


def _target_text(target: tuple[Any, Any]) -> str:
    owner, attr = target
    if owner == "handler":
        return f"the {RmiFid(attr).name} handler"
    return f"{getattr(owner, '__name__', owner)}.{attr}"


def inject_problem(names: "tuple[str, ...] | list[str]") -> tuple[str, str] | None:
    """Why these catalogued bugs cannot be switched on together, as (what is wrong, what was
    expected), or None. A bug named twice says nothing new; two bugs that swap the same handler
    or function cannot both be on: the one installed last replaces the other, so a run would
    report the first as injected while it ran the correct code there (lock-two-unordered with
    lock-two-check-late found nothing)."""
    seen: dict[tuple[Any, Any], str] = {}
    for i, name in enumerate(names):
        if name in names[:i]:
            return f"{name} is named twice", "each bug at most once"
        bug = BUGS[name]
        other = seen.get(bug.target)
        if other is not None:
            return (f"{other} and {name} both replace {_target_text(bug.target)}, so only one of them could be on",
                    "bugs that replace different code (run these one at a time)")
        seen[bug.target] = name
    return None


def install(names: "tuple[str, ...] | list[str]", probe: "Patches", calls: dict[str, int] | None = None,
            publish: Counter | None = None) -> None:
    """Switch the named bugs on in this process (undone by probe.restore); with ``calls``,
    count each one's calls there by name (0 for one that never runs), and with ``publish`` too
    (a stress CPU's count in the stress segment, which outlives its process). ``publish`` counts
    first, and both before the buggy copy runs (_counted): the count that outlives a killed CPU
    is never short of the calls it began, so its 0 proves the bug never ran there
    (StressReport.unreached)."""
    count = None if calls is None else counter(calls)
    if count is not None and publish is not None:
        count = _both(publish, count)
    for name in names:
        if calls is not None:
            calls.setdefault(name, 0)
        BUGS[name].install(probe, count)


def catalog_text() -> str:
    """The catalog as `rmm-mp stress --list-bugs` prints it."""
    width = max(len(n) for n in BUGS)
    # Headed as the report's tables are: the middle column is the checker that reports the bug
    # with it alone on (docs/stress.md, "The bug catalog"), which a bare "lockdep" did not say.
    checker = max(len("found by"), *(len(b.checker) for b in BUGS.values()))
    mistake = max(len(b.summary) for b in BUGS.values())
    lines = [f"{'bug':<{width}}  {'found by':<{checker}}  mistake (rmm-mp stress --inject BUG)",
             f"{'-' * width}  {'-' * checker}  {'-' * mistake}"]
    for bug in BUGS.values():
        lines.append(f"{bug.name:<{width}}  {bug.checker:<{checker}}  {bug.summary}")
    return "\n".join(lines)
