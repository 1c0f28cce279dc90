"""The stress tool inside one CPU process: held locks, running references, findings, patches.

A Probe is the GranuleTable observer of every table in its process (the CPU's own and the
host's, which copies NS memory under a host-owner lock word), so it knows which locks this
process holds, in order, with the class each was taken as (stress.classes). The lock-order
checker, the ownership checker and the scheduler read that list; the call in progress is read
back from the CPU's shared area, where EL3 publishes it (el3.monitor smc_from_ns_published).

Everything the stress tool changes in a process goes through ``patch``: a function, method or
property swapped for an instrumented one at start-up, undone in reverse order by ``restore``.
Nothing is checked per call on the paths of an ordinary run.

This module owns that per-process state. It must not decide what is a finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from rmm_mp.hw.cpuarea import CALL, OFF_CALL, OFF_IN_RSI, OFF_RSI_CALL, RSI_CALL
from rmm_mp.hw.granule import NO_SUB
from rmm_mp.stress import classes
from rmm_mp.stress.findings import Finding, FindingLog, call_text
from rmm_mp.rmm.dispatch import COMMANDS

if TYPE_CHECKING:
    from rmm_mp.hw.granule import GranuleTable
    from rmm_mp.machine import Cpu
    from rmm_mp.stress.lockdep import LockOrder
    from rmm_mp.stress.sched import Scheduler


class StressAbort(BaseException):
    """The run was ended (deadlock, watchdog) while this CPU was inside a call: its locks stay
    held and the call is abandoned. A BaseException, so that no handler mistakes it for an
    RMM error; EL3 treats it as an interrupted RMM (the machine is marked dead).

    ``waiting_for`` (a granule's PA, -1 if none), ``holder`` (its lock word then) and ``call``
    (the call in progress): the lock the CPU was waiting for when the abort came, so that the
    report can name a CPU stuck behind a holder whose process died."""

    def __init__(self, message: str, waiting_for: int = -1, holder: int = 0, call: str = "") -> None:
        super().__init__(message)
        self.waiting_for = waiting_for
        self.holder = holder
        self.call = call


@dataclass(slots=True)
class Held:
    """One lock this process holds."""

    idx: int
    cls: int
    sub: int
    addr: int
    root: bool
    owner: int = 0
    """The lock word of the table that took it (GranuleTable.owner): the CPU's own, or its host
    process's for an NS copy. Both tables index the same granules, so an index alone does not
    say which of the two took a lock."""

    def describe(self) -> str:
        return f"{classes.name(self.cls)} {self.addr:#x}"


class Patches:
    """Functions, methods or properties swapped for other ones, undone newest first by
    ``restore``: how the stress tool (Probe) and the interleaving explorer (stress.explore)
    change a process, and how a catalogued bug (stress.bugs) is switched on."""

    def __init__(self) -> None:
        self._patches: list[tuple[Any, str, Any]] = []

    def patch(self, owner: Any, name: str, replacement: Any) -> Any:
        """Replace ``owner.name`` (a class, module or instance attribute); returns what it was
        (for a class: the function or property object itself), so the replacement can wrap it."""
        before = getattr(owner, name)
        try:
            original = vars(owner).get(name, _MISSING)
        except TypeError:           # an instance with __slots__
            original = before
        self._patches.append((owner, name, original))
        setattr(owner, name, replacement)
        return before

    def on_restore(self, undo: Callable[[], Any]) -> None:
        """Run ``undo`` when the patches are undone (for swaps patch cannot express)."""
        self._patches.append((undo, "", _CALL))

    def restore(self) -> None:
        """Undo every patch, newest first."""
        while self._patches:
            owner, name, original = self._patches.pop()
            if original is _CALL:
                owner()
            elif original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


class Probe(Patches):
    """The stress tool's state in one CPU process; also the lock observer of its tables."""

    def __init__(self, cpu: "Cpu") -> None:
        super().__init__()
        self.cpu = cpu
        self.cpu_id = cpu.id
        self.buf = cpu.area.buf
        self.held: list[Held] = []
        self.running: dict[int, int] = {}
        """REC granule index -> its RD's granule index, for each running reference held here."""
        self.next_cls = classes.NS_COPY
        self.next_sub = NO_SUB
        self.findings = FindingLog()
        self.lockdep: "LockOrder | None" = None
        self.sched: "Scheduler | None" = None
        self.on_finding: Callable[[], None] | None = None
        """Called after each new finding (the worker ends the run)."""
        self.checking = True
        """False while the probe's own code reads shared state (in-process invariant checks)."""
        self.roles: Mapping[int, str] = {}
        """The population's roles (population.roles, set by the worker), which the identities of
        the leaked locks stress.instrument finds name, as the watchdog's do."""

    # -- the LockObserver protocol (hw.granule) ---------------------------------------------

    def acquired(self, table: "GranuleTable", idx: int, waited_ns: int, sub: int = NO_SUB) -> None:
        cls, sub = self.next_cls, self.next_sub
        self.next_cls, self.next_sub = classes.NS_COPY, NO_SUB
        root = classes.is_rtt(cls) and (classes.is_root_hint(sub)
                                         or (sub < 0 and not any(classes.is_rtt(h.cls) for h in self.held)))
        held = Held(idx, cls, sub, table.base + (idx << 12), root, table.owner)
        if self.lockdep is not None and self.checking:
            self.lockdep.check(held, self.held)
        self.held.append(held)

    def released(self, table: "GranuleTable", idx: int) -> None:
        held, owner = self.held, table.owner
        for i in range(len(held) - 1, -1, -1):
            if held[i].idx == idx and held[i].owner == owner:
                del held[i]
                return

    def holds(self, idx: int, owner: int | None = None) -> bool:
        """Whether this process holds granule ``idx``'s lock, taken through the table whose lock
        word is ``owner`` (None: through either of its tables, for an access that may be the
        host's NS copy or the RMM's, PhysicalMemory's), and the lock word still names it.

        Matched by index alone, an access the RMM made through the CPU's table counted as its
        own while only the host's NS copy held the granule, and an entry whose lock word was
        cleared under it (so another CPU may hold the granule now) still counted: both hid an
        unlocked access. The granule's state is not matched: a lock stays its holder's across
        the state changes it makes."""
        for h in self.held:
            if h.idx == idx and (owner is None or h.owner == owner):
                table = self.cpu.granules
                if table.holder(idx) == h.owner:
                    return True
        return False

    # -- what this CPU is doing -------------------------------------------------------------

    def current_call(self) -> str:
        """The RMI call in progress (and the realm call inside it), as EL3 published them."""
        return describe_call(self.buf)

    def finding(self, checker: str, rule: str, message: str, site: str = "", details: tuple[str, ...] = (),
                identity: str = "") -> bool:
        """Record a finding made on this CPU now (the call and step are filled in)."""
        step = self.sched.step if self.sched is not None else None
        held = held_lines(self.held)
        added = self.findings.add(Finding(checker, rule, message, self.cpu_id, self.current_call(), site,
                                          details + held, step, identity=identity))
        if added and self.on_finding is not None:
            self.on_finding()
        return added


def held_lines(held: "list[Held] | tuple[Held, ...]") -> tuple[str, ...]:
    """A finding's lines for the locks a CPU holds, in the order it took them: one line per
    run of consecutive locks of one class, ``holding DELEGATED 0x80100000, 0x80101000 (2
    granules)``; a lock alone in its run keeps ``holding RD 0x8008f000``. REC_CREATE holding
    its 16 aux granules and the REC, all taken as DELEGATED, was 17 lines of one class."""
    lines: list[str] = []
    i = 0
    while i < len(held):
        name = classes.name(held[i].cls)
        j = i + 1
        while j < len(held) and classes.name(held[j].cls) == name:
            j += 1
        addrs = ", ".join(f"{h.addr:#x}" for h in held[i:j])
        lines.append(f"holding {name} {addrs}" + (f" ({j - i} granules)" if j - i > 1 else ""))
        i = j
    return tuple(lines)


_MISSING = object()
_CALL = object()


def describe_call(buf: memoryview) -> str:
    """``RMI_X(args)`` (``; realm call RSI_Y(...)``) from a CPU area, or "" between calls."""
    in_call, fid, *args = CALL.unpack_from(buf, OFF_CALL)
    if not in_call:
        return ""
    cmd = COMMANDS.get(fid & 0xFFFF_FFFF)
    text = call_text(fid, args, cmd.inputs if cmd is not None else None)
    in_rsi = int.from_bytes(buf[OFF_IN_RSI:OFF_IN_RSI + 4], "little")
    if in_rsi:
        rfid, *rargs = RSI_CALL.unpack_from(buf, OFF_RSI_CALL)
        text += f"; realm call {call_text(rfid, rargs)}"
    return text
