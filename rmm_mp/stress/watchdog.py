"""The watchdog: CPUs that wait too long, hang or die, and what every CPU was doing then.

Deterministic mode needs no clock: a CPU that finds a lock held is blocked (stress.sched), and
when no CPU can run while one is blocked, the run is stuck. ``stuck_finding`` tells a deadlock
(the wait-for graph has a cycle) from a leaked lock (the holder is not waiting: it finished, or
holds the lock between calls) and names every CPU's held locks and call.

Free-running mode (``Watchdog``, polled by the parent every tick): each CPU publishes the lock
it spins on and its spin count (stress.instrument replaces the contended path of the lock) and
the call it is in (EL3). Bounds are in spins and CPU time, never in wall time, so an
oversubscribed host, where a lock holder may wait seconds for a core, raises no alarm:
  deadlock     a cycle of CPUs each spinning on a lock the next one holds, seen on two
               consecutive ticks with spin counts still rising;
  leaked lock  a CPU spinning on a lock whose holder is between calls (published in_call 0),
               on two consecutive ticks; not a lock a CPU's host holds for an NS copy (a
               host-owner lock word), which the copy always releases: a copy slowed by the
               OS's scheduler is not a leak;
  stuck call   a CPU in the same RMI call (its count of calls started unchanged) that used
               more than ``cpu_bound_s`` seconds of CPU time meanwhile;
A CPU process that dies is reported by the runtime (rmm_mp.runtime CpuFailure) and turned into
a finding with the same snapshot. On any of these the run ends cleanly: the stress segment says
abort, spinning CPUs leave their call, and the others stop between operations.

This module owns the stuck analysis, the snapshots, and the wording of a watchdog finding's
identity (Finding.identity: call_on, named_on, kind_of), which stress.instrument's leaked-lock
findings share. It must not change the machine.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from rmm_mp.hw.granule import HOST_OWNER_FLAG, STATE_MASK, STATE_SHIFT, describe_owner
from rmm_mp.rmm.granule_state import GranuleState as GS
from rmm_mp.stress.findings import Finding, call_name
from rmm_mp.stress.probe import describe_call
from rmm_mp.stress.shared import BLOCKED, STATUS_NAMES, StressSegment

if TYPE_CHECKING:
    from rmm_mp.machine import Machine


@dataclass(frozen=True)
class CpuSnapshot:
    """What one CPU was doing: its call, the lock it waits for, the locks it holds."""

    cpu: int
    status: str
    call: str
    waiting_for: int
    held: tuple[int, ...]
    host_held: tuple[int, ...] = ()
    """The part of ``held`` that the CPU's host holds (a host-owner lock word naming the
    process bound to the CPU): Machine.ns_read/ns_write lock the NS granules they copy."""
    states: tuple[tuple[int, str], ...] = ()
    """(PA, granule state name) of the locks in ``held`` and ``waiting_for``, as the granule
    table had them when the snapshot was taken: a deadlock between "0x8008f000" and
    "0x80090000" said nothing of which was the RD and which the root table."""
    published: bool = True
    """Whether the CPU publishes its calls (el3.monitor smc_from_ns_published): only `rmm-mp
    stress` CPUs do. For one that does not, an empty ``call`` says nothing of where it is."""

    def _lock(self, pa: int) -> str:
        name = dict(self.states).get(pa)
        return f"{name} {pa:#x}" if name else f"{pa:#x}"

    def describe(self) -> str:
        wait = f", waiting for {self._lock(self.waiting_for)}" if self.waiting_for >= 0 else ""
        held = ", ".join(self._lock(pa) + (" (host copy)" if pa in self.host_held else "")
                         for pa in self.held) or "none"
        # The host copies NS memory between its calls (a copy inside a call locks with the
        # CPU's own word): "between calls" alone read as a lock left behind.
        call = self.call or ("between calls, its host copying NS memory" if self.host_held else "between calls")
        if not self.call and not self.published and len(self.held) > len(self.host_held):
            # In `rmm-mp run` a CPU takes a lock word of its own only inside an RMI, which it does
            # not publish: "between calls" read as a lock left behind, where it was one in use.
            call = "call not known (only rmm-mp stress CPUs publish theirs)"
        return f"CPU {self.cpu} ({self.status}): {call}{wait}; holds {held}"


def owner_cpu(machine: "Machine", word: int) -> int:
    """The CPU a lock word names: CPU n + 1, or a host owner whose pid holds a CPU binding."""
    if word == 0:
        return -1
    if not word & HOST_OWNER_FLAG:
        return word - 1
    pid = word & 0x7FFF_FFFF
    for cpu in range(machine.cpus):
        area = machine.cpu_area(cpu)
        try:
            if area.binding() & 0xFFFF_FFFF == pid:
                return cpu
        finally:
            area.release()
    return -1


def owner_text(machine: "Machine", word: int) -> str:
    """Who a lock word names, by CPU (a host-owner word: the host process bound to that CPU), so
    that no pid appears in a report."""
    cpu = owner_cpu(machine, word)
    if cpu < 0:
        return describe_owner(word)
    return f"CPU {cpu}" if not word & HOST_OWNER_FLAG else f"the host process of CPU {cpu}"


DEAD = "its process is dead"
"""The status of a CPU whose process died without leaving the machine (``snapshots``'s
``dead``): its call was cut off where it died and its locks stay held."""


def snapshots(machine: "Machine", seg: StressSegment | None = None,
              waiting: dict[int, int] | None = None, dead: Collection[int] = (),
              published: bool = True) -> list[CpuSnapshot]:
    """Every CPU's snapshot. Locks are found by scanning lock words (a host-owner word counts
    for the CPU bound to that process); ``waiting`` overrides the published wait (granule PA);
    the CPUs in ``dead`` (whose process the caller knows to have died) have the status DEAD,
    where "running" (or the segment's status) read as if the CPU were still at work;
    ``published`` false: the machine's CPUs do not publish their calls (no stress run)."""
    table = machine.granule_table(0)
    locks, state_words = table.snapshot()
    held: dict[int, list[int]] = {}
    host_held: dict[int, list[int]] = {}
    for idx, word in enumerate(locks):
        if word:
            cpu = owner_cpu(machine, word)
            held.setdefault(cpu, []).append(table.addr(idx))
            if word & HOST_OWNER_FLAG:
                host_held.setdefault(cpu, []).append(table.addr(idx))
    out = []
    for cpu in range(machine.cpus):
        area = machine.cpu_area(cpu)
        try:
            call = describe_call(area.buf)
            wait_idx = area.waiting_for()
        finally:
            area.release()
        status = "running"
        if seg is not None:
            status = STATUS_NAMES[seg.status(cpu)]
            if seg.status(cpu) == BLOCKED:
                wait_idx = seg.blocked_on(cpu)
        wait = table.addr(wait_idx) if wait_idx >= 0 else -1
        if waiting is not None and cpu in waiting:
            wait = waiting[cpu]
        if cpu in dead:
            status = DEAD
        mine = tuple(held.get(cpu, ()))
        states = tuple((pa, _state_name(state_words, table.find(pa))) for pa in mine + ((wait,) if wait >= 0 else ()))
        out.append(CpuSnapshot(cpu, status, call, wait, mine, tuple(host_held.get(cpu, ())), states, published))
    return out


def _state_name(state_words: list[int], idx: int) -> str:
    """The state of granule ``idx`` from a snapshot's state words ("" for an address outside
    the table, which has no state to name)."""
    if not 0 <= idx < len(state_words):
        return ""
    return GS.name((state_words[idx] >> STATE_SHIFT) & STATE_MASK)


def _holder(machine: "Machine", pa: int) -> tuple[int, int]:
    table = machine.granule_table(0)
    word = table.holder(table.find(pa))
    return word, owner_cpu(machine, word)


def wait_cycle(machine: "Machine", snaps: list[CpuSnapshot]) -> list[int]:
    """CPUs forming a cycle of waits (each waits for a lock the next holds), or []."""
    waits_on = {}
    for s in snaps:
        if s.waiting_for >= 0:
            waits_on[s.cpu] = _holder(machine, s.waiting_for)[1]
    for start in waits_on:
        seen, cpu = [], start
        while cpu in waits_on and cpu not in seen:
            seen.append(cpu)
            cpu = waits_on[cpu]
        if cpu in seen:
            return seen[seen.index(cpu):]
    return []


def cycle_identity(snaps: list[CpuSnapshot], cycle: list[int] | tuple[int, ...],
                   roles: Mapping[int, str] | None = None) -> str:
    """What tells one deadlock from another (Finding.identity): each CPU of the ``cycle``'s call
    without its arguments and the state of the granule it waits for, in sorted order
    (``RMI_DATA_CREATE_UNKNOWN waits for RD and RMI_DATA_DESTROY waits for RTT``). No CPU number,
    which CPU comes first, granule address or step: a shrinking that replays the run with fewer
    switches changes those (the same two calls on the CPUs the other way round, another data
    granule), not the calls and lock roles that deadlock. With ``roles`` (population.roles), the
    realm each call is on and each waited-for granule is of, as in call_identity: two deadlocks of
    the same calls, one in realm T and one in realm N, are two problems."""
    return " and ".join(sorted(wait_identity(snaps[cpu], roles) for cpu in cycle))


_FIRST_ARGUMENT = re.compile(r"\w+\((0x[0-9a-fA-F]+)")


def call_on(call: str, roles: Mapping[int, str]) -> str:
    """A published ``call`` (describe_call) without its arguments, and the realm of ``roles``
    its first argument (an RD for most commands) is: ``RMI_RTT_CREATE on realm T``. Also the
    call stress.instrument's leaked-lock findings name."""
    first = _FIRST_ARGUMENT.match(call)
    return named_on(call_name(call) or "between calls", int(first.group(1), 16) if first else None, roles)


def named_on(name: str, first: int | None, roles: Mapping[int, str]) -> str:
    """The command ``name`` and the realm of ``roles`` its ``first`` argument is, if any: ``RMI_RTT_CREATE on
    realm T``. For call_on and stress.instrument's leaked-lock findings, which know the argument itself."""
    role = roles.get(first) if first is not None else None
    return f"{name} on {role}" if role else name


def kind_of(kind: str, pa: int, roles: Mapping[int, str]) -> str:
    """The ``kind`` of the granule at ``pa`` and whose it is if ``roles`` names it: ``RD of
    realm T``. Also the locks stress.instrument's leaked-lock findings name."""
    return f"{kind} of {roles[pa]}" if pa in roles else kind


def _call(s: CpuSnapshot, roles: Mapping[int, str]) -> str:
    """The CPU's call without its arguments, and the realm its first argument is (call_on)."""
    return call_on(s.call, roles)


def _kind(s: CpuSnapshot, pa: int, roles: Mapping[int, str]) -> str:
    """The state of the granule at ``pa`` as the snapshot has it, and whose it is (kind_of)."""
    return kind_of(dict(s.states).get(pa) or "a granule", pa, roles)


def wait_identity(s: CpuSnapshot, roles: Mapping[int, str] | None = None) -> str:
    """One CPU's part of an identity: its call without arguments and the state of the granule
    it waits for (``RMI_DATA_DESTROY waits for RTT``); alone, the identity of a leaked lock seen
    from its waiter. Not the leaking call's: the lock word names only the holding CPU, whose
    area keeps its last call, not necessarily the one that took the lock. (A call that returns
    holding a lock is caught at its return, named by it: stress.instrument. The two never meet in
    one shrinking: a deterministic run catches a CPU's leak at the return exactly when the
    watchdog checker is on, and its replays have the same checkers.)"""
    roles = roles or {}
    return f"{_call(s, roles)} waits for {_kind(s, s.waiting_for, roles)}"


def call_identity(s: CpuSnapshot, roles: Mapping[int, str] | None = None) -> str:
    """A stuck call's identity, and a dead CPU's after how it failed: the call without its
    arguments, the kind of lock it waits for if it waits (wait_identity), and the kinds it
    holds, each once, sorted (``RMI_RTT_CREATE holding RD, RTT``). No CPU number or address.
    With ``roles`` (population.roles: every watchdog finding has them), the realm its first
    argument is and whose each granule of the population is (``RMI_RTT_CREATE on realm T
    holding RD of realm T, RTT``): two stuck calls of one command holding the same kinds of lock
    in two realms were one problem to shrinking. A granule the CPUs made has no role."""
    roles = roles or {}
    held = sorted({_kind(s, pa, roles) for pa in s.held})
    head = wait_identity(s, roles) if s.waiting_for >= 0 else _call(s, roles)
    return head + (f" holding {', '.join(held)}" if held else "")


def stuck_finding(machine: "Machine", seg: StressSegment, step: int, roles: Mapping[int, str] | None = None) -> Finding:
    """Deterministic mode: no CPU can run while some are blocked. Deadlock or leaked lock, its
    identity naming the realms of ``roles`` (population.roles)."""
    snaps = snapshots(machine, seg)
    cycle = wait_cycle(machine, snaps)
    details = tuple(s.describe() for s in snaps)
    if cycle:
        chain = " -> ".join(f"CPU {c}" for c in cycle + cycle[:1])
        return Finding("watchdog", "deadlock", f"CPUs wait for each other's locks: {chain}", cycle[0], "", "",
                       details, step, identity=cycle_identity(snaps, cycle, roles))
    blocked = [s for s in snaps if s.waiting_for >= 0]
    victim = blocked[0] if blocked else snaps[0]
    word, holder = _holder(machine, victim.waiting_for) if blocked else (0, -1)
    return Finding("watchdog", "leaked-lock",
                   f"CPU {victim.cpu} waits for {victim.waiting_for:#x}, held by {owner_text(machine, word)}, "
                   f"which {'is not in a call' if holder >= 0 else 'is no CPU of this run'}",
                   victim.cpu, victim.call, "", details, step, identity=wait_identity(victim, roles))


_Suspect = tuple[str, tuple[int, ...], tuple[tuple[int, int], ...]]
"""A look's suspicion: the kind ("deadlock", "leaked-lock"), the CPUs that wait, and for each
the granule PA it waits for and the lock word that holds it."""


class Watchdog:
    """Free-running mode: the parent's periodic look at every CPU (see the module docstring)."""

    def __init__(self, machine: "Machine", cpu_bound_s: float = 10.0, roles: Mapping[int, str] | None = None) -> None:
        self.machine = machine
        self.cpu_bound_s = cpu_bound_s
        self.roles = roles or {}
        """The population's roles (population.roles), which its findings' identities name."""
        self._suspect: _Suspect | None = None
        self._spins: dict[int, int] = {}
        self._calls: dict[int, tuple[int, float]] = {}
        self._procs: dict[int, psutil.Process] = {}

    def tick(self) -> Finding | None:
        """Look once; a finding when something is wrong for sure."""
        m = self.machine
        snaps = snapshots(m)
        spins = {}
        for s in snaps:
            area = m.cpu_area(s.cpu)
            try:
                spins[s.cpu] = area.wait_spins()
            finally:
                area.release()
        rising = {c for c, n in spins.items() if n > self._spins.get(c, -1)}
        self._spins = spins
        suspect = self._suspicion(snaps)
        confirmed = suspect is not None and suspect == self._suspect and set(suspect[1]) <= rising
        self._suspect = suspect
        if confirmed and suspect is not None:
            return self._finding(suspect, snaps)
        return self._stuck_call(snaps)

    def _suspicion(self, snaps: list[CpuSnapshot]) -> "_Suspect | None":
        """What this look suspects, with the locks waited for and their holders' lock words: a
        finding needs the same suspicion on two looks in a row, so two short, unrelated holds
        (a host's NS copy, say) seen half a second apart are not taken for one leaked lock."""
        cycle = wait_cycle(self.machine, snaps)
        if cycle:
            return "deadlock", tuple(cycle), tuple(self._wait(snaps[c]) for c in cycle)
        for s in snaps:
            if s.waiting_for < 0:
                continue
            word, holder = _holder(self.machine, s.waiting_for)
            # A host-owner word is a host's NS copy (Machine.ns_read/ns_write), which releases
            # its lock when the copy ends, however long the OS keeps its process off a core: by
            # design between calls, never left behind (a host that died is a cpu-died finding).
            if (holder >= 0 and holder != s.cpu and not word & HOST_OWNER_FLAG and not snaps[holder].call
                    and snaps[holder].waiting_for < 0):
                return "leaked-lock", (s.cpu,), ((s.waiting_for, word),)
        return None

    def _wait(self, snap: CpuSnapshot) -> tuple[int, int]:
        return snap.waiting_for, _holder(self.machine, snap.waiting_for)[0]

    def _finding(self, suspect: "_Suspect", snaps: list[CpuSnapshot]) -> Finding:
        kind, cpus, _ = suspect
        details = tuple(s.describe() for s in snaps)
        if kind == "deadlock":
            chain = " -> ".join(f"CPU {c}" for c in cpus + cpus[:1])
            return Finding("watchdog", "deadlock", f"CPUs wait for each other's locks: {chain}", cpus[0], "", "",
                           details, identity=cycle_identity(snaps, cpus, self.roles))
        victim = snaps[cpus[0]]
        word, _ = _holder(self.machine, victim.waiting_for)
        return Finding("watchdog", "leaked-lock", f"CPU {victim.cpu} waits for {victim.waiting_for:#x}, held by "
                       f"{owner_text(self.machine, word)}, which is not in a call", victim.cpu, victim.call, "",
                       details, identity=wait_identity(victim, self.roles))

    def _stuck_call(self, snaps: list[CpuSnapshot]) -> Finding | None:
        for s in snaps:
            area = self.machine.cpu_area(s.cpu)
            try:
                started, pid = area.calls_started(), area.binding() & 0xFFFF_FFFF
            finally:
                area.release()
            used = self._cpu_time(s.cpu, pid)
            if not s.call or used is None:
                self._calls.pop(s.cpu, None)
                continue
            first = self._calls.setdefault(s.cpu, (started, used))
            if first[0] != started:
                self._calls[s.cpu] = (started, used)
            elif used - first[1] > self.cpu_bound_s:
                return Finding("watchdog", "stuck-call", f"CPU {s.cpu} used {used - first[1]:.1f} s of CPU time in "
                               "one call without returning", s.cpu, s.call, "", tuple(x.describe() for x in snaps),
                               identity=call_identity(s, self.roles))
        return None

    def _cpu_time(self, cpu: int, pid: int) -> float | None:
        if not pid:
            return None
        proc = self._procs.get(cpu)
        try:
            if proc is None or proc.pid != pid:
                proc = self._procs[cpu] = psutil.Process(pid)
            times = proc.cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system
