"""Lock-order checker in the spirit of Linux lockdep: which lock classes are taken while others
are held, on every CPU, and whether that breaks the locking rules or could close a cycle.

In each CPU process (``LockOrder.check``, called by the Probe for every acquisition):
  - every class held -> class taken pair is an edge; the first time a CPU sees an edge it
    records the call (RMI command and arguments, or realm call) and the source site, and sets
    the bit in its edge matrix in the shared area (hw.cpuarea OFF_LOCK_EDGES), so the parent
    has the edges of a CPU that died too;
  - each acquisition is checked against the rules of docs/locking.md (hw.granule numbering):
      rule 1  an external class (NS, DELEGATED, RD, REC) taken while an internal one is held
      rule 2  an external granule taken while holding an external one at a higher address
      rule 3  any lock taken while holding a granule whose state did not match its class when
              it was locked (the state is read from the granule table at each acquisition)
      rule 4  internal classes out of order (RTT, then DATA, then REC_AUX); a DATA granule
              taken without a level-3 table held (DATA after its RTT); a REC_AUX granule taken
              without holding the REC whose aux list names it, or while holding an aux
              granule of that REC of a higher aux index (the REC's contents are read raw)
      rule 5  an RTT below the root taken without its parent table held (hand over hand: a
              held table one level up with a table entry pointing to it, so within one tree),
              or while a table at its level or deeper is held; roots out of address order; a
              root other than root 0 taken without root 0 held, outside REALM_DESTROY (root 0
              from the RD held, the running REC's RD, or the RD taken earlier in the call in
              progress; unknown, not checked; which roots REALM_DESTROY takes is not checked);
              a second DATA granule
      rule 8  an NS memory copy holding any other lock, or its pages out of address order
      counted in  any lock taken while the CPU is counted in as executing realm code
              (hw/tlb.py): a TLB or GPT invalidation made holding that lock would wait for
              this CPU's next sync point, which never comes (docs/locking.md, "Waits that are
              not locks")
    A violation is reported even if no deadlock happened: lockdep's point.

In the parent (``analyse``): the union of every CPU's edges, searched for cycles. Edges between
two external classes and edges within one class are left out of the search: those locks are
ordered by address (rules 2 and 5), which the per-acquisition check enforces, and their class
graph has cycles by design (lock_two takes RD then DELEGATED, or DELEGATED then RD).

Limits: classes are per state (and RTT level), not per realm: two realms' RTTs share a class.
"DATA after its RTT" checks that a level-3 table is held, not that it is the one that mapped
the granule (DATA_DESTROY has already rewritten the entry when it locks the granule). Rule 6
(state changes under the lock) is the ownership checker's, rule 7 the invariant checker's.

This module owns the rules and the graph. It must not take locks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.hw.cpuarea import CALL, LOCK_EDGES, OFF_CALL, OFF_CALLS_STARTED, OFF_EXEC_RD, OFF_LOCK_EDGES
from rmm_mp.hw.granule import STATE_MASK, STATE_SHIFT
from rmm_mp.rmm.granule_state import GranuleState as GS
from rmm_mp.rmm.rec_desc import AUX_MAX, OFF_NUM_AUX
from rmm_mp.rmm.s2tt import table as table_desc
from rmm_mp.stress import classes as C
from rmm_mp.stress.findings import Finding, site

if TYPE_CHECKING:
    from rmm_mp.stress.probe import Held, Probe

_ROW = LOCK_EDGES.size // 16
_AUX = struct.Struct(f"<Q{AUX_MAX}Q")
_DESC = struct.Struct("<Q")
_ROOTS = struct.Struct("<QQ")
"""An RD's rtt_num_start and rtt_base, adjacent from _OFF_RTT_NUM_START (rmm.realm_desc's layout)."""
_OFF_RTT_NUM_START = 0x018
_CALL_HEAD = struct.Struct("<IxxxxQ")
"""The first two fields of a CPU area's published call (hw.cpuarea CALL): in a call, FID."""
_TABLE_BYTES = 4096

AuxOf = Callable[[int], "tuple[int, ...]"]
"""A REC's aux granule addresses, in aux index order, from its granule index."""
PointsTo = Callable[[int, int], bool]
"""Whether the table at a granule index has a table entry pointing to a PA."""


@dataclass(frozen=True)
class Edge:
    """A lock-order edge and where one CPU first saw it."""

    src: int
    dst: int
    cpu: int | None
    call: str
    site: str
    step: int | None = None
    src_pa: int | None = None
    dst_pa: int | None = None
    """The granules of the held and the taken lock when the edge was first seen (None for an
    edge only a CPU's shared matrix shows: a CPU that died before returning its records). A
    cycle of classes named no granule, where every other finding names its locks."""

    def describe(self) -> str:
        where = f"first seen on CPU {self.cpu}" if self.cpu is not None else "seen"
        if self.step is not None:
            where += f" at step {self.step}"
        call = f" in {self.call}" if self.call else ""
        at = f" at {self.site}" if self.site else ""
        return f"{_lock(self.src, self.src_pa)} -> {_lock(self.dst, self.dst_pa)}: {where}{call}{at}"

    def to_json(self) -> dict[str, object]:
        return {"from": C.name(self.src), "to": C.name(self.dst), "from_pa": self.src_pa, "to_pa": self.dst_pa,
                "cpu": self.cpu, "call": self.call, "site": self.site, "step": self.step}


def _lock(cls: int, pa: int | None) -> str:
    """``RD 0x8008f000``, as a held lock is named; the class alone when the granule is unknown."""
    return C.name(cls) if pa is None else f"{C.name(cls)} {pa:#x}"


class LockOrder:
    """One CPU's lock-order bookkeeping."""

    def __init__(self, probe: "Probe") -> None:
        self.probe = probe
        self.rows = [0] * 16
        self.edges: dict[tuple[int, int], Edge] = {}
        self._view = probe.cpu.area.view
        self._base = probe.cpu.area.base + OFF_LOCK_EDGES
        self._exec_rd = probe.cpu.area.base + OFF_EXEC_RD
        """The word hw.tlb publishes while this CPU executes realm code (0 when counted out)."""
        # Raw reads, as the ownership checker's own: not the accessors it wraps, and no
        # schedule point (a checker must not change the interleaving it watches).
        self._table = probe.cpu.granules
        self._memory = probe.cpu.machine.memory.buf
        self._mismatched: list[tuple["Held", int]] = []
        """Locks held whose granule's state did not match their class when taken, with the
        state found (rule 3)."""
        self._call_rd: tuple[bytes, int] | None = None
        """(the published call, as bytes; the RD's granule index) of the last RD this CPU took
        in a call: an RMI walk locks root 0 under the RD and releases the RD before it goes on,
        so a root it takes later has no RD held to tell its realm (_root_zero_first)."""

    def check(self, new: "Held", held: "list[Held]") -> None:
        rows = self.rows
        bit = 1 << new.cls
        for h in held:
            if not rows[h.cls] & bit:
                self._edge(h, new)
        problem = None
        if held or new.cls in C.REACHED or (C.is_rtt(new.cls) and not new.root):
            problem = violation(new, held, self._aux_of, self._points_to)
        if problem is None and new.root and C.is_rtt(new.cls):
            problem = self._root_zero_first(new, held)
        if problem is None and self._mismatched:
            problem = self._after_mismatch(new, held)
        if problem is None and self._view.load_u64(self._exec_rd):
            problem = "counted in", (f"{new.describe()} taken while counted in as executing realm code (hw/tlb.py): "
                                     "an invalidation made holding it would wait for this CPU for ever")
        if problem is not None:
            rule, message = problem
            self.probe.finding("lockdep", rule, message, site())
        self._note_mismatch(new)
        if new.cls == C.RD:
            call = self._published_call()
            if int.from_bytes(call[:4], "little"):
                self._call_rd = call, new.idx

    def _published_call(self) -> bytes:
        """The call this CPU's EL3 published (its first word non-zero in a call), its FID and
        arguments, then the CPU's count of calls started: the same bytes name the same call in
        progress. The count tells apart two calls with the same FID and arguments: REC_ENTER(rec,
        run) once the REC was destroyed and made again in another realm is another realm's."""
        buf = self.probe.buf
        return bytes(buf[OFF_CALL:OFF_CALL + CALL.size]) + bytes(buf[OFF_CALLS_STARTED:OFF_CALLS_STARTED + 8])

    def _root_zero_first(self, new: "Held", held: "list[Held]") -> tuple[str, str] | None:
        """Rule 5's root 0 first: a root RTT other than root 0 is taken only while root 0 of the
        same realm is held (the walk's hand-over), or by REALM_DESTROY, which holds the RD and
        no table. The realm is the RD held, else the one of the REC this CPU runs (its running
        reference, which only the ownership checker records), else the RD this CPU took earlier
        in the call in progress (an RMI walk goes on after releasing it: a root taken then
        without root 0 went unchecked); unknown, nothing is checked. The call is known by its
        published FID and arguments and the count of calls started (an earlier call with the
        same arguments may name another realm's RD: the REC of a REC_ENTER made again elsewhere).
        Root 0 and the number of roots are the RD's rtt_base and rtt_num_start, fixed from
        REALM_CREATE on (read raw, as the checkers' other reads)."""
        rd = next((h.idx for h in held if h.cls == C.RD), None)
        if rd is None:
            realms = set(self.probe.running.values())
            if len(realms) == 1:
                rd = realms.pop()
            elif not realms and self._call_rd is not None and self._call_rd[0] == self._published_call():
                rd = self._call_rd[1]
            else:
                return None
        num_roots, rtt_base = _ROOTS.unpack_from(self._memory, (rd << 12) + _OFF_RTT_NUM_START)
        root = (new.addr - rtt_base) >> 12
        if new.addr < rtt_base or root >= num_roots or root == 0:
            return None     # root 0, or another realm's table (not this realm's concern)
        if any(h.addr == rtt_base and C.is_rtt(h.cls) for h in held):
            return None
        in_call, fid = _CALL_HEAD.unpack_from(self.probe.buf, OFF_CALL)
        if not in_call:
            return None     # no call published (a checker test's bare locks): no exception known
        if fid & 0xFFFF_FFFF == RmiFid.RMI_REALM_DESTROY and not any(C.is_rtt(h.cls) for h in held):
            return None
        return "rule 5", (f"root {new.describe()} (root {root} of RD {self._table.addr(rd):#x}) taken without "
                          f"its root 0 {rtt_base:#x} held: a walk locks root 0 first, then the root covering "
                          "its IPA before releasing root 0")

    def _aux_of(self, rec_idx: int) -> tuple[int, ...]:
        count, *aux = _AUX.unpack_from(self._memory, (rec_idx << 12) + OFF_NUM_AUX)
        return tuple(aux[:min(count, AUX_MAX)])

    def _points_to(self, parent_idx: int, child_pa: int) -> bool:
        """A table entry of the held table ``parent_idx`` names ``child_pa`` (read raw: the
        entries are this CPU's, under the parent's lock)."""
        offset = parent_idx << 12
        raw = bytes(self._memory[offset:offset + _TABLE_BYTES])
        pattern = _DESC.pack(table_desc(child_pa))
        at = raw.find(pattern)
        while at >= 0:
            if at % _DESC.size == 0:
                return True
            at = raw.find(pattern, at + 1)
        return False

    def _note_mismatch(self, new: "Held") -> None:
        """Rule 3: remember a lock whose granule is not in the state its class expects. The
        state is read at once, under the lock just taken, so only its holder could change it."""
        expected = C.state_of(new.cls)
        if expected is None:
            return
        state = (self._table._load((new.idx << 3) + 4) >> STATE_SHIFT) & STATE_MASK
        if state != expected:
            self._mismatched.append((new, state))

    def _after_mismatch(self, new: "Held", held: "list[Held]") -> tuple[str, str] | None:
        """Rule 3: a lock taken while still holding one whose state check must have failed."""
        self._mismatched = [m for m in self._mismatched if any(m[0] is h for h in held)]
        if not self._mismatched:
            return None
        found = ", ".join(f"{h.describe()} (found {GS.name(state)})" for h, state in self._mismatched)
        return "rule 3", (f"{new.describe()} taken while holding {found}, whose state did not match when it was "
                          "locked (on a mismatch, unlock and take nothing more)")

    def _edge(self, held: "Held", new: "Held") -> None:
        src, dst = held.cls, new.cls
        self.rows[src] |= 1 << dst
        self._view.store_u16(self._base + _ROW * src, self.rows[src])
        sched = self.probe.sched
        self.edges[(src, dst)] = Edge(src, dst, self.probe.cpu_id, self.probe.current_call(), site(),
                                      sched.step if sched is not None else None, held.addr, new.addr)


def violation(new: "Held", held: "list[Held]", aux_of: "AuxOf | None" = None,
              points_to: "PointsTo | None" = None) -> tuple[str, str] | None:
    """(rule, message) if taking ``new`` while holding ``held`` breaks a rule, else None.
    ``aux_of`` reads a held REC's aux list; without it, any held REC counts as the aux's own.
    ``points_to`` reads a held table's entries; without it, any table one level up counts as
    the new table's parent."""
    cls = new.cls
    if cls == C.NS_COPY:
        others = [h for h in held if h.cls != C.NS_COPY]
        if others:
            return "rule 8", f"NS memory copied ({new.addr:#x}) while holding {_list(others)}"
        if any(h.addr > new.addr for h in held):
            return "rule 8", f"NS copy locks {new.addr:#x} after a higher page"
        return None
    if any(h.cls == C.NS_COPY for h in held):
        return "rule 8", f"{new.describe()} taken during an NS memory copy"
    if cls in C.EXTERNAL:
        internal = [h for h in held if h.cls not in C.EXTERNAL]
        if internal:
            return "rule 1", f"external {new.describe()} taken while holding internal {_list(internal)}"
        higher = [h for h in held if h.addr > new.addr]
        if higher:
            return "rule 2", f"{new.describe()} taken while holding {_list(higher)} at a higher address"
        return None
    above = [h for h in held if h.cls not in C.EXTERNAL and C.rank(h.cls) > C.rank(cls)]
    if above:
        return "rule 4", f"{new.describe()} taken while holding {_list(above)} (order is RTT, DATA, REC_AUX)"
    if C.is_rtt(cls):
        return _rtt_violation(new, [h for h in held if C.is_rtt(h.cls)], points_to)
    if cls == C.DATA:
        if any(h.cls == C.DATA for h in held):
            return "rule 5", f"{new.describe()} taken while holding another DATA granule"
        return _data_violation(new, held)
    if cls == C.REC_AUX:
        return _aux_violation(new, held, aux_of)
    return None


def _data_violation(new: "Held", held: "list[Held]") -> tuple[str, str] | None:
    """DATA after its RTT: only the level-3 table that maps a DATA granule reaches it (an RTT
    whose locker named no level, RTT[?], cannot be told apart and is accepted)."""
    if any(C.is_rtt(h.cls) and C.rtt_level(h.cls) in (3, -1) for h in held):
        return None
    holding = f" (holding only {_list(held)})" if held else " (holding no lock)"
    return "rule 4", (f"DATA {new.addr:#x} taken without a level-3 RTT held{holding}: DATA after its RTT, "
                      "under the last-level table that maps it")


def _aux_violation(new: "Held", held: "list[Held]", aux_of: "AuxOf | None") -> tuple[str, str] | None:
    """REC_AUX under its REC, in aux index order: only a locked REC reaches its aux granules."""
    recs = [h for h in held if h.cls == C.REC]
    if aux_of is None:
        return None if recs else ("rule 4", f"REC_AUX {new.addr:#x} taken without its REC held")
    for rec in recs:
        aux = aux_of(rec.idx)
        if new.addr not in aux:
            continue
        position = aux.index(new.addr)
        later = [h for h in held if h.cls == C.REC_AUX and h.addr in aux and aux.index(h.addr) > position]
        if later:
            return "rule 4", (f"REC_AUX {new.addr:#x} (aux {position} of REC {rec.addr:#x}) taken while holding "
                              f"{_list(later)}, a later aux granule of the same REC (aux index order)")
        return None
    holding = f"holding {_list(recs)}, whose aux granules do not include it" if recs else "holding no REC"
    return "rule 4", f"REC_AUX {new.addr:#x} taken without its REC held ({holding}): REC_AUX under its REC"


def _rtt_violation(new: "Held", rtts: "list[Held]", points_to: "PointsTo | None" = None) -> tuple[str, str] | None:
    if new.root:
        below = [h for h in rtts if not h.root]
        if below:
            return "rule 5", f"root {new.describe()} taken while holding {_list(below)} (root to leaf only)"
        if any(h.addr > new.addr for h in rtts):
            return "rule 5", f"root {new.describe()} taken after a root at a higher address"
        return None
    level = C.rtt_level(new.cls)
    if level < 0:
        return None
    # A root whose locker named no level (RTT[?]) may be the parent: its level cannot be checked.
    parents = [h for h in rtts if C.rtt_level(h.cls) in (level - 1, -1)]
    if not parents:
        return "rule 5", (f"{new.describe()} taken without its parent level-{level - 1} table held "
                          "(hand over hand: lock the child before releasing the parent)")
    if points_to is not None and not any(points_to(h.idx, new.addr) for h in parents):
        return "rule 5", (f"{new.describe()} taken while holding {_list(parents)}, none of which has a table entry "
                          "pointing to it (within one tree: a table is reached through its parent's entry)")
    deeper = [h for h in rtts if not h.root and C.rtt_level(h.cls) >= level]
    if deeper:
        return "rule 5", f"{new.describe()} taken while holding {_list(deeper)} (root to leaf only)"
    return None


def _list(held: "Iterable[Held]") -> str:
    return ", ".join(h.describe() for h in held)


# -- the parent: merged graph and cycles ------------------------------------------------------------

def matrix_edges(rows: "Iterable[int]") -> set[tuple[int, int]]:
    """Edges of one CPU's published matrix (hw.cpuarea lock_edges)."""
    return {(src, dst) for src, row in enumerate(rows) for dst in range(16) if row >> dst & 1}


def _order(edge: Edge) -> tuple[int, int]:
    return (edge.step if edge.step is not None else 1 << 62, edge.cpu if edge.cpu is not None else 1 << 30)


def _ordered_by_address(src: int, dst: int) -> bool:
    return src == dst or (src in C.EXTERNAL and dst in C.EXTERNAL)


def cycles(edges: "Iterable[tuple[int, int]]") -> list[tuple[int, ...]]:
    """Every elementary cycle of the class graph (ignoring address-ordered edges), each once,
    rotated to start at its smallest class; shortest first."""
    graph: dict[int, set[int]] = {}
    for src, dst in edges:
        if not _ordered_by_address(src, dst):
            graph.setdefault(src, set()).add(dst)
    found: set[tuple[int, ...]] = set()
    for start in sorted(graph):
        stack: list[tuple[int, list[int]]] = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    found.add(tuple(path))
                elif nxt > start and nxt not in path and len(path) < 12:
                    stack.append((nxt, path + [nxt]))
    return sorted(found, key=lambda c: (len(c), c))


def analyse(edges: dict[tuple[int, int], Edge]) -> list[Finding]:
    """A finding per cycle of the merged edge set, naming where each edge was first seen."""
    out = []
    for cycle in cycles(edges):
        pairs = list(zip(cycle, cycle[1:] + cycle[:1]))
        names = " -> ".join(C.name(c) for c in cycle + cycle[:1])
        details = tuple(edges[p].describe() for p in pairs)
        # A cycle has no site: its classes (rotated to the smallest by ``cycles``) tell it from
        # another cycle when a shrinking compares findings (Finding.key).
        out.append(Finding("lockdep", "cycle", f"lock classes can deadlock: {names}", None, "", "", details,
                           identity=names))
    return out


def merge(per_cpu: "Iterable[Iterable[Edge]]", matrices: "dict[int, tuple[int, ...]]") -> dict[tuple[int, int], Edge]:
    """One Edge per (src, dst): of the records the CPUs returned, the earliest (by step, then
    CPU: the same on every replay), plus bare edges that only a shared matrix shows (a CPU that
    died before returning its records)."""
    merged: dict[tuple[int, int], Edge] = {}
    for records in per_cpu:
        for edge in records:
            known = merged.get((edge.src, edge.dst))
            if known is None or _order(edge) < _order(known):
                merged[(edge.src, edge.dst)] = edge
    for cpu, rows in sorted(matrices.items()):
        for pair in matrix_edges(rows):
            merged.setdefault(pair, Edge(pair[0], pair[1], cpu, "", ""))
    return merged
