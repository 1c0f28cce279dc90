"""An independent model of one realm's stage-2 translation tables (DEN0137 RMM 1.0-rel0, A5.5).

Written from the spec's text and pseudo-code; it imports nothing from rmm_mp, so a wrong rule in
the RMM's RTT handlers cannot hide behind a shared helper. It keeps the realm's IPA space as RTTs
of RTT entries (A5.5.4: UNASSIGNED, ASSIGNED, ASSIGNED_NS, UNASSIGNED_NS, TABLE, with a RIPAS for
protected entries, A5.2.2), the state of the granules the commands name (A2.2), the realm's state
and one REC's pending RIPAS change (A5.4). No hardware detail: an entry holds what the spec says
it holds (state, RIPAS, output address, MemAttr and S2AP of ASSIGNED_NS entries).

Every command returns the list of outcomes the spec allows, as (X0, X1, ...) tuples with None for
an output the spec leaves UNDEFINED. B1.6: where two failure conditions hold and the spec orders
neither before the other, either post-condition may be observed, so the list holds both; on
success it holds one outcome and the model has applied the command's success conditions.

    RTT_CREATE B4.3.15   RTT_DESTROY B4.3.16   RTT_FOLD B4.3.17   RTT_INIT_RIPAS B4.3.18
    RTT_MAP_UNPROTECTED B4.3.19   RTT_READ_ENTRY B4.3.20   RTT_SET_RIPAS B4.3.21
    RTT_UNMAP_UNPROTECTED B4.3.22   DATA_CREATE B4.3.1   DATA_CREATE_UNKNOWN B4.3.2
    DATA_DESTROY B4.3.3   REALM_ACTIVATE B4.3.8

Where the spec contradicts itself, the model follows the choice recorded in docs/deviations.md
(the DEVIATION_* switches below, each naming its row). Not modelled: the RIM (spec_measurement.py
is its oracle), LPA2, the RMM's locks and concurrency, GPT and granule contents, REC_ENTER.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

GRANULE = 0x1000
ENTRIES = 512                      # A5.5.1: 4 KiB RTTs of 8-byte entries
PAGE_LEVEL = 3                     # RMM_RTT_PAGE_LEVEL
PA_LIMIT_NO_LPA2 = 1 << 48         # *_bound2 / addr_bound without FEAT_LPA2

# B4.4.25 RmiStatusCode, B1.3: the RTT error carries the level in X0[15:8].
SUCCESS, ERROR_INPUT, ERROR_REALM, ERROR_REC, ERROR_RTT = 0, 1, 2, 3, 4
# B4.4.23 RmiRipas, B4.4.24 RmiRttEntryState.
EMPTY, RAM, DESTROYED = 0, 1, 2
RMI_UNASSIGNED, RMI_ASSIGNED, RMI_TABLE = 0, 1, 2
# A5.5.4 RmmRttEntryState.
UNASSIGNED, ASSIGNED, ASSIGNED_NS, UNASSIGNED_NS, TABLE = "UNASSIGNED", "ASSIGNED", "ASSIGNED_NS", "UNASSIGNED_NS", "TABLE"
# A2.2.2 granule states (NS: not delegated).
NS, DELEGATED, RD, REC, REC_AUX, DATA, RTT = "NS", "DELEGATED", "RD", "REC", "REC_AUX", "DATA", "RTT"
REALM_NEW, REALM_ACTIVE = "NEW", "ACTIVE"
CHANGE_DESTROYED = 1               # B5.4.x RsiRipasChangeDestroyed: a change from DESTROYED is allowed

# Stage 2 block/page descriptor fields (A5.5.11, Arm ARM "Attribute fields in stage 2 VMSAv8-64
# Block and Page descriptors"): MemAttr [5:2], S2AP [7:6], output address [47:12] without LPA2.
MEMATTR_SHIFT, MEMATTR_HOST_MASK = 2, 0x7 << 2      # MemAttr[2:0]; MemAttr[3] is RES0 (FWB)
S2AP_SHIFT, S2AP_MASK = 6, 0x3 << 6
ADDR_MASK = ((1 << 48) - 1) & ~(GRANULE - 1)
HOST_MASK = ADDR_MASK | MEMATTR_HOST_MASK | S2AP_MASK
MEMATTR_RESERVED = 0b100           # FEAT_S2FWB MemAttr[2:0] = 0b100 is a reserved encoding

# Choices where the spec's own text disagrees with itself (docs/deviations.md, "From the
# specification"); True means the model follows the recorded choice, not the literal clause.
DEVIATION_TOP_IS_IPA_AT_LIVE_BLOCK = True
"""RTT_DESTROY, DATA_DESTROY, UNMAP_UNPROTECTED: when the walk stops at a live entry that contains
ipa, top = ipa (the commands' outcome tables) rather than B3.76's AlignDownToRttLevel of it."""
DEVIATION_INIT_RIPAS_STOPS_AT_ASSIGNED = True
"""RTT_INIT_RIPAS: walk_top stops at the first entry that is not UNASSIGNED (A5.3.5 "HIPAS is
UNASSIGNED"), not only at TABLE entries (B3.75 with stop_at_destroyed FALSE)."""
DEVIATION_SET_RIPAS_NO_EXEMPTION = True
"""RTT_SET_RIPAS base_align / no_progress hold whatever the RIPAS of the entry at base (B4.3.21
exempts an entry that already has the target RIPAS)."""
DEVIATION_DESTROY_UNPROTECTED_IS_UNASSIGNED_NS = True
"""RTT_DESTROY at an unprotected IPA leaves the parent UNASSIGNED_NS (A5.5.4), not UNASSIGNED
DESTROYED (B4.3.16 rtte_state, ripas)."""

Outcome = tuple[Optional[int], ...]


def rtt_error(level: int) -> int:
    """X0 of (RMI_ERROR_RTT, level) (B1.3: status in [7:0], index in [15:8])."""
    return ERROR_RTT | ((level & 0xFF) << 8)


def level_size(level: int) -> int:
    """B3.68 RttLevelSize, 4 KiB granules."""
    return GRANULE << (9 * (PAGE_LEVEL - level))


def level_aligned(addr: int, level: int) -> bool:
    """B3.5 AddrIsRttLevelAligned: FALSE for a level that is not an RTT level (0..3 without LPA2)."""
    return 0 <= level <= PAGE_LEVEL and addr % level_size(level) == 0


def align_down(addr: int, level: int) -> int:
    """B3.7 AlignDownToRttLevel."""
    return addr - addr % level_size(level)


def desc_valid_for_unprotected(desc: int) -> bool:
    """B3.56 RttDescriptorIsValidForUnprotected: only the Host-controlled attributes (A5.5.11:
    ADDR, MemAttr[2:0], S2AP) may be set, to architecturally valid values."""
    return desc & ~HOST_MASK == 0 and (desc & MEMATTR_HOST_MASK) >> MEMATTR_SHIFT != MEMATTR_RESERVED


@dataclass
class Entry:
    """An RTTE (A5.5.4): its state, RIPAS (protected IPAs only), output address (live entries),
    the Host attributes MemAttr | S2AP in descriptor position (ASSIGNED_NS only), and the next
    RTT (TABLE only)."""

    state: str
    ripas: int = EMPTY
    addr: int = 0
    attrs: int = 0
    table: Optional["Rtt"] = None

    @property
    def live(self) -> bool:
        """A5.5.8 RTTE liveness."""
        return self.state in (ASSIGNED, ASSIGNED_NS, TABLE)

    def copy(self) -> "Entry":
        return Entry(self.state, self.ripas, self.addr, self.attrs, self.table)


@dataclass
class Rtt:
    """One RTT granule: its PA, level, the IPA of its first entry and its 512 entries."""

    pa: int
    level: int
    base: int
    entries: list[Entry]

    @property
    def top(self) -> int:
        """The next IPA after the last entry (B3.73-B3.76 "the next IPA after the last entry")."""
        return self.base + len(self.entries) * level_size(self.level)

    def index(self, ipa: int) -> int:
        return (ipa - self.base) // level_size(self.level)

    def ipa_of(self, i: int) -> int:
        return self.base + i * level_size(self.level)

    def is_live(self) -> bool:
        """B3.64 RttIsLive (A5.5.8): some entry is ASSIGNED or TABLE."""
        return any(e.state in (ASSIGNED, TABLE) for e in self.entries)

    def fold(self) -> Optional[Entry]:
        """B3.62 RttFold / B3.63 RttIsHomogeneous (A5.5.6): the parent entry a fold gives, or None
        when the RTT is not homogeneous."""
        first = self.entries[0]
        states = {e.state for e in self.entries}
        if states == {UNASSIGNED}:
            if all(e.ripas == first.ripas for e in self.entries):
                return Entry(UNASSIGNED, first.ripas)
            return None
        if states == {UNASSIGNED_NS}:
            return Entry(UNASSIGNED_NS)
        if states not in ({ASSIGNED}, {ASSIGNED_NS}) or self.level not in (2, 3):
            return None
        size = level_size(self.level)
        if first.addr % level_size(self.level - 1) != 0:
            return None
        if any(e.addr != first.addr + i * size for i, e in enumerate(self.entries)):
            return None
        if first.state == ASSIGNED and any(e.ripas != first.ripas for e in self.entries):
            return None
        if first.state == ASSIGNED_NS and any(e.attrs != first.attrs for e in self.entries):
            return None
        return Entry(first.state, first.ripas, first.addr, first.attrs)


@dataclass
class Walk:
    """C1.31 RmmRttWalkResult: the level reached, the RTT holding the entry, the entry."""

    level: int
    rtt: Rtt
    rtte: Entry


@dataclass
class Cond:
    """One failure condition: its label, whether its pre-condition holds (None: not well formed
    here, which the spec's ordering makes impossible to observe), its post-condition's outputs."""

    name: str
    holds: Optional[bool]
    outcome: Outcome


def _lazy(fn: Callable[[], bool]) -> Optional[bool]:
    """Evaluate a pre-condition that is well formed only if earlier ones are false."""
    try:
        return fn()
    except _IllFormed:
        return None


class _IllFormed(Exception):
    """A pre-condition reads something that does not exist (the walk of an IPA outside the
    realm, Realm(rd) of a granule that is no RD)."""


def observable(conds: Sequence[Cond], order: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[Outcome]:
    """B1.6: the post-conditions that may be observed: of every condition that holds, those that
    no other holding condition precedes. ``order`` is the spec's "[A, B] < [C, D]" list."""
    before = {(a, b) for left, right in order for a in left for b in right}
    holding = [c for c in conds if c.holds]
    out = []
    for c in holding:
        if not any((a.name, c.name) in before for a in holding):
            if c.outcome not in out:
                out.append(c.outcome)
    assert holding or all(c.holds is not None for c in conds), "ill-formed condition with none holding"
    return out


@dataclass
class RecRipas:
    """The REC attributes of a RIPAS change (A2.3.2): ripas_addr, ripas_top, ripas_value,
    ripas_destroyed."""

    addr: int = 0
    top: int = 0
    value: int = EMPTY
    destroyed: int = 0


@dataclass
class SpecRealm:
    """One realm (A2.1) and the granules its commands name."""

    ipa_width: int
    start_level: int
    rd: int
    rtt_base: int
    state: str = REALM_NEW
    granules: dict[int, str] = field(default_factory=dict)
    recs: dict[int, RecRipas] = field(default_factory=dict)
    roots: list[Rtt] = field(default_factory=list)

    def __post_init__(self) -> None:
        """REALM_CREATE (B4.3.9.3): the RD, the starting-level RTTs, every protected entry
        UNASSIGNED EMPTY and every unprotected one UNASSIGNED_NS. Every RTT has 512 entries
        (C1.28 RmmRtt), a root too: a root of a narrow IPA space (one level-0 root for 40 bits)
        has entries past 2^ipa_width, which no walk reaches and which are not live, but which
        "the next IPA after the last entry in rtt" (B3.73-B3.76) counts."""
        self.granules[self.rd] = RD
        size = level_size(self.start_level)
        count = -(-(1 << self.ipa_width) // (size * ENTRIES))
        for k in range(count):
            base = k * ENTRIES * size
            entries = [self._fresh(base + i * size) for i in range(ENTRIES)]
            root = Rtt(self.rtt_base + k * GRANULE, self.start_level, base, entries)
            self.roots.append(root)
            self.granules[root.pa] = RTT

    def _fresh(self, ipa: int) -> Entry:
        return Entry(UNASSIGNED, EMPTY) if self.protected(ipa) else Entry(UNASSIGNED_NS)

    # -- B3 helpers ------------------------------------------------------------------------------

    def protected(self, ipa: int) -> bool:
        """B3.4 AddrIsProtected."""
        return ipa < 1 << (self.ipa_width - 1)

    def level_valid(self, level: int) -> bool:
        """B3.67 RttLevelIsValid: a level of this realm's RTT tree."""
        return self.start_level <= level <= PAGE_LEVEL

    def level_block_or_page(self, level: int) -> bool:
        """B3.65 RttLevelIsBlockOrPage: a level of the tree whose entries can map a block (1, 2
        with 4 KiB granules and no LPA2) or a page (3)."""
        return self.level_valid(level) and level >= 1

    def granule(self, pa: int) -> str:
        return self.granules.get(pa, NS)

    def _realm(self, rd: int) -> "SpecRealm":
        """Realm(rd); ill formed when rd is not this realm's RD."""
        if rd != self.rd:
            raise _IllFormed
        return self

    def walk(self, ipa: int, level: int) -> Walk:
        """B3.78 RttWalk: from the starting level down to ``level``, stopping at an entry that is
        not TABLE (A5.5.10); the address must lie in the IPA space."""
        if not 0 <= ipa < 1 << self.ipa_width:
            raise _IllFormed
        rtt = self.roots[ipa // level_size(self.start_level) // ENTRIES]
        lvl = self.start_level
        while True:
            entry = rtt.entries[rtt.index(ipa)]
            if lvl >= level or entry.state != TABLE:
                return Walk(lvl, rtt, entry)
            assert entry.table is not None
            rtt, lvl = entry.table, lvl + 1

    def skip_non_live(self, rtt: Rtt, ipa: int) -> int:
        """B3.76 RttSkipNonLiveEntries: the IPA of the first live entry from ipa, or the RTT's top."""
        first = rtt.index(ipa)
        for i in range(first, len(rtt.entries)):
            if rtt.entries[i].live:
                if i == first and DEVIATION_TOP_IS_IPA_AT_LIVE_BLOCK:
                    return ipa
                return rtt.ipa_of(i)
        return rtt.top

    def skip_with_ripas(self, rtt: Rtt, base: int, top: int, stop: Callable[[Entry], bool]) -> int:
        """B3.75 RttSkipEntriesWithRipas, with the stop test as a predicate: the IPA of the first
        entry from base that stops the scan, else the RTT's top; at most top; aligned down."""
        result = rtt.top
        for i in range(rtt.index(base), len(rtt.entries)):
            if stop(rtt.entries[i]):
                result = rtt.ipa_of(i)
                break
        return align_down(min(result, top), rtt.level)

    # -- common failure conditions -------------------------------------------------------------------

    def _rd_conds(self, rd: int) -> list[Cond]:
        """rd_align, rd_bound, rd_state (rd_bound: the tests name DRAM granules only)."""
        return [Cond("rd_align", rd % GRANULE != 0, (ERROR_INPUT,)),
                Cond("rd_state", self.granule(rd) != RD or rd != self.rd, (ERROR_INPUT,))]

    @staticmethod
    def _granule_conds(prefix: str, pa: int, state: str, want: str) -> list[Cond]:
        return [Cond(f"{prefix}_align", pa % GRANULE != 0, (ERROR_INPUT,)),
                Cond(f"{prefix}_state", state != want, (ERROR_INPUT,)),
                Cond(f"{prefix}_bound2", pa >= PA_LIMIT_NO_LPA2, (ERROR_INPUT,))]

    # -- RMI_RTT_CREATE -------------------------------------------------------------------------

    def rtt_create(self, rd: int, rtt: int, ipa: int, level: int) -> list[Outcome]:
        """B4.3.15: a new RTT at ``level`` for ipa, unfolding the parent entry (A5.5.7)."""
        walk = lambda: self._realm(rd).walk(ipa, level - 1)  # noqa: E731
        conds = self._rd_conds(rd) + [
            Cond("level_bound", not self.level_valid(level) or level == self.start_level, (ERROR_INPUT,)),
            Cond("ipa_align", not level_aligned(ipa, level - 1), (ERROR_INPUT,)),
            Cond("ipa_bound", ipa >= 1 << self.ipa_width, (ERROR_INPUT,)),
            *self._granule_conds("rtt", rtt, self.granule(rtt), DELEGATED),
        ]
        w = _walk_or_none(walk, conds)
        conds += [Cond("rtt_walk", None if w is None else w.level < level - 1, (rtt_error(w.level if w else 0),)),
                  Cond("rtte_state", None if w is None else w.rtte.state == TABLE, (rtt_error(w.level if w else 0),))]
        failures = observable(conds, [(["rd_bound", "rd_state"], ["rtt_walk", "rtte_state"]),
                                      (["level_bound", "ipa_bound"], ["rtt_walk", "rtte_state"])])
        if failures:
            return failures
        assert w is not None
        unfold = w.rtte
        size = level_size(level)
        entries = []
        for i in range(ENTRIES):
            child = Entry(unfold.state, unfold.ripas if self.protected(ipa) else EMPTY, 0, unfold.attrs)
            if unfold.state in (ASSIGNED, ASSIGNED_NS):
                child.addr = unfold.addr + i * size          # rtte_c_addr: contiguous from unfold.addr
            entries.append(child)
        w.rtt.entries[w.rtt.index(ipa)] = Entry(TABLE, addr=rtt, table=Rtt(rtt, level, ipa, entries))
        self.granules[rtt] = RTT
        return [(SUCCESS,)]

    # -- RMI_RTT_DESTROY / RMI_RTT_FOLD ---------------------------------------------------------------

    def _table_conds(self, rd: int, ipa: int, level: int, with_top: bool) -> tuple[list[Cond], Optional[Walk]]:
        """The failure conditions RTT_DESTROY and RTT_FOLD share, walk included; with_top: the
        RTT errors carry top == walk_top and the others top == 0 (B4.3.16's outcome table)."""
        conds = self._rd_conds(rd) + [
            Cond("level_bound", not self.level_valid(level) or level == self.start_level, (ERROR_INPUT,)),
            Cond("ipa_align", not level_aligned(ipa, level - 1), (ERROR_INPUT,)),
            Cond("ipa_bound", ipa >= 1 << self.ipa_width, (ERROR_INPUT,)),
        ]
        if with_top:
            conds = [Cond(c.name, c.holds, (ERROR_INPUT, None, 0)) for c in conds]
        w = _walk_or_none(lambda: self._realm(rd).walk(ipa, level - 1), conds)
        err: Outcome = (rtt_error(w.level),) if w else (None,)
        if with_top and w is not None:
            err = (rtt_error(w.level), None, self.skip_non_live(w.rtt, ipa))
        conds += [Cond("rtt_walk", None if w is None else w.level < level - 1, err),
                  Cond("rtte_state", None if w is None else w.rtte.state != TABLE, err)]
        return conds, w

    def rtt_destroy(self, rd: int, ipa: int, level: int) -> list[Outcome]:
        """B4.3.16: destroy a non-live RTT (A5.5.9); outputs rtt, top."""
        conds, w = self._table_conds(rd, ipa, level, with_top=True)
        child = w.rtte.table if w is not None and w.rtte.state == TABLE and w.level == level - 1 else None
        conds.append(Cond("rtt_live", None if child is None else child.is_live(), (rtt_error(level), None, ipa)))
        failures = observable(conds, [(["rd_bound", "rd_state"], ["rtt_walk", "rtte_state", "rtt_live"]),
                                      (["level_bound", "ipa_bound"], ["rtt_walk", "rtte_state"]),
                                      (["rtt_walk", "rtte_state"], ["rtt_live"])])
        if failures:
            return failures
        assert w is not None and child is not None
        if self.protected(ipa) or not DEVIATION_DESTROY_UNPROTECTED_IS_UNASSIGNED_NS:
            parent = Entry(UNASSIGNED, DESTROYED)
        else:
            parent = Entry(UNASSIGNED_NS)
        w.rtt.entries[w.rtt.index(ipa)] = parent
        self.granules[child.pa] = DELEGATED
        return [(SUCCESS, child.pa, self.skip_non_live(w.rtt, ipa))]

    def rtt_fold(self, rd: int, ipa: int, level: int) -> list[Outcome]:
        """B4.3.17: destroy a homogeneous RTT, moving its contents into the parent entry; output rtt."""
        conds, w = self._table_conds(rd, ipa, level, with_top=False)
        child = w.rtte.table if w is not None and w.rtte.state == TABLE and w.level == level - 1 else None
        fold = child.fold() if child is not None else None
        conds.append(Cond("rtt_homo", None if child is None else fold is None, (rtt_error(level),)))
        failures = observable(conds, [(["rd_bound", "rd_state"], ["rtt_walk", "rtte_state", "rtt_homo"]),
                                      (["level_bound", "ipa_bound"], ["rtt_walk", "rtte_state"]),
                                      (["rtt_walk", "rtte_state"], ["rtt_homo"])])
        if failures:
            return failures
        assert w is not None and child is not None and fold is not None
        w.rtt.entries[w.rtt.index(ipa)] = fold
        self.granules[child.pa] = DELEGATED
        return [(SUCCESS, child.pa)]

    # -- RMI_RTT_INIT_RIPAS ------------------------------------------------------------------------

    def rtt_init_ripas(self, rd: int, base: int, top: int) -> list[Outcome]:
        """B4.3.18: RIPAS RAM over UNASSIGNED entries of one RTT from base; output out_top."""
        conds = self._rd_conds(rd) + [
            Cond("size_valid", top <= base, (ERROR_INPUT,)),
            Cond("top_bound", not self.protected((top - GRANULE) % (1 << 64)), (ERROR_INPUT,)),
            Cond("realm_state", _lazy(lambda: self._realm(rd).state != REALM_NEW), (ERROR_REALM,)),
            Cond("top_gran_align", top % GRANULE != 0, (ERROR_INPUT,)),
        ]
        w = _walk_or_none(lambda: self._realm(rd).walk(base, PAGE_LEVEL), conds)
        walk_top = None if w is None else self.skip_with_ripas(w.rtt, base, top, self._init_ripas_stop)
        err = (rtt_error(w.level if w else 0),)
        conds += [Cond("base_align", None if w is None else not level_aligned(base, w.level), err),
                  Cond("rtte_state", None if w is None else w.rtte.state != UNASSIGNED, err),
                  Cond("no_progress", None if w is None else base == walk_top, err)]
        failures = observable(conds, [(["rd_bound", "rd_state"], ["realm_state"]),
                                      (["rd_bound", "rd_state"], ["base_align", "rtte_state"]),
                                      (["rd_bound", "rd_state"], ["no_progress"]),
                                      (["top_gran_align"], ["no_progress"])])
        if failures:
            return [f + (None,) for f in failures]
        assert w is not None and walk_top is not None
        self._set_ripas_range(w.rtt, base, walk_top, RAM)
        return [(SUCCESS, walk_top)]

    @staticmethod
    def _init_ripas_stop(entry: Entry) -> bool:
        if DEVIATION_INIT_RIPAS_STOPS_AT_ASSIGNED:
            return entry.state != UNASSIGNED
        return entry.state == TABLE

    @staticmethod
    def _set_ripas_range(rtt: Rtt, base: int, top: int, ripas: int) -> None:
        """B3.57 RttEntriesInRangeRipas as an effect: entries of rtt in [base, top) get ripas."""
        for i in range(rtt.index(base), rtt.index(top)):
            rtt.entries[i].ripas = ripas

    # -- RMI_RTT_SET_RIPAS ---------------------------------------------------------------------------

    def request_ripas(self, rec: int, base: int, top: int, value: int, destroyed: int) -> None:
        """What RSI_IPA_STATE_SET records in the REC (B5.3.6): the range, the value, the flag."""
        self.recs[rec] = RecRipas(base, top, value, destroyed)

    def rtt_set_ripas(self, rd: int, rec: int, base: int, top: int) -> list[Outcome]:
        """B4.3.21: apply part of a REC's RIPAS change; output out_top."""
        r = self.recs.get(rec) if self.granule(rec) == REC else None

        def need_rec() -> RecRipas:
            if r is None:
                raise _IllFormed
            return r

        conds = self._rd_conds(rd) + [
            Cond("rec_align", rec % GRANULE != 0, (ERROR_INPUT,)),
            Cond("rec_gran_state", self.granule(rec) != REC, (ERROR_INPUT,)),
            Cond("size_valid", top <= base, (ERROR_INPUT,)),
            Cond("base_bound", _lazy(lambda: base != need_rec().addr), (ERROR_INPUT,)),
            Cond("top_bound", _lazy(lambda: top > need_rec().top), (ERROR_INPUT,)),
            Cond("top_gran_align", top % GRANULE != 0, (ERROR_INPUT,)),
        ]
        w = _walk_or_none(lambda: self._realm(rd).walk(base, PAGE_LEVEL), conds)
        walk_top: Optional[int] = None
        if w is not None and r is not None:
            stop_at_destroyed = r.destroyed != CHANGE_DESTROYED
            walk_top = self.skip_with_ripas(
                w.rtt, base, top, lambda e: e.state == TABLE or (stop_at_destroyed and e.ripas == DESTROYED))
        differs = w is not None and r is not None and (DEVIATION_SET_RIPAS_NO_EXEMPTION or w.rtte.ripas != r.value)
        err = (rtt_error(w.level if w else 0),)
        conds += [Cond("base_align", None if w is None or r is None else differs and not level_aligned(base, w.level), err),
                  Cond("no_progress", None if walk_top is None else differs and base == walk_top, err)]
        failures = observable(conds, [(["rd_bound", "rd_state"], ["base_align"]),
                                      (["rd_bound", "rd_state"], ["no_progress"]),
                                      (["rec_bound", "rec_gran_state"], ["rec_state", "rec_owner"]),
                                      (["base_bound"], ["base_align"]),
                                      (["top_gran_align"], ["no_progress"])])
        if failures:
            return [f + (None,) for f in failures]
        assert w is not None and r is not None and walk_top is not None
        self._set_ripas_range(w.rtt, base, walk_top, r.value)
        r.addr = min(top, walk_top)
        return [(SUCCESS, r.addr)]

    # -- RMI_RTT_READ_ENTRY -------------------------------------------------------------------------

    def rtt_read_entry(self, rd: int, ipa: int, level: int) -> list[Outcome]:
        """B4.3.20: (walk level, state, desc, ripas) of the entry the walk reaches; ripas None for
        a TABLE entry (no success condition names it)."""
        conds = self._rd_conds(rd) + [
            Cond("level_bound", not self.level_valid(level), (ERROR_INPUT,)),
            Cond("ipa_align", not level_aligned(ipa, level), (ERROR_INPUT,)),
            Cond("ipa_bound", ipa >= 1 << self.ipa_width, (ERROR_INPUT,)),
        ]
        failures = observable(conds, [])
        if failures:
            return failures
        w = self.walk(ipa, level)
        e = w.rtte
        state = {UNASSIGNED: RMI_UNASSIGNED, UNASSIGNED_NS: RMI_UNASSIGNED, ASSIGNED: RMI_ASSIGNED,
                 ASSIGNED_NS: RMI_ASSIGNED, TABLE: RMI_TABLE}[e.state]        # B3.61 RttEntryState
        desc = {UNASSIGNED: 0, UNASSIGNED_NS: 0, ASSIGNED: e.addr, TABLE: e.addr,
                ASSIGNED_NS: e.addr | e.attrs}[e.state]
        ripas: Optional[int] = {UNASSIGNED: e.ripas, ASSIGNED: e.ripas, UNASSIGNED_NS: EMPTY,
                                ASSIGNED_NS: EMPTY, TABLE: None}[e.state]
        return [(SUCCESS, w.level, state, desc, ripas)]

    # -- RMI_DATA_CREATE / RMI_DATA_CREATE_UNKNOWN / RMI_DATA_DESTROY ------------------------------

    def _data_conds(self, rd: int, data: int, ipa: int) -> tuple[list[Cond], Optional[Walk]]:
        conds = self._granule_conds("data", data, self.granule(data), DELEGATED) + self._rd_conds(rd) + [
            Cond("ipa_align", ipa % GRANULE != 0, (ERROR_INPUT,)),
            Cond("ipa_bound", not self.protected(ipa), (ERROR_INPUT,)),
        ]
        w = _walk_or_none(lambda: self._realm(rd).walk(ipa, PAGE_LEVEL), conds)
        err = (rtt_error(w.level if w else 0),)
        conds += [Cond("rtt_walk", None if w is None else w.level < PAGE_LEVEL, err),
                  Cond("rtte_state", None if w is None else w.rtte.state != UNASSIGNED, err)]
        return conds, w

    _DATA_ORDER = [(["rd_bound", "rd_state"], ["realm_state"]),
                   (["rd_bound", "rd_state"], ["rtt_walk", "rtte_state"]),
                   (["ipa_bound"], ["rtt_walk", "rtte_state"])]

    def data_create(self, rd: int, data: int, ipa: int, src: int, flags: int) -> list[Outcome]:
        """B4.3.1: a DATA granule at ipa with RIPAS RAM (src's content: not modelled); realm NEW."""
        conds, w = self._data_conds(rd, data, ipa)
        conds += [Cond("src_align", src % GRANULE != 0, (ERROR_INPUT,)),
                  Cond("src_pas", self.granule(src - src % GRANULE) != NS, (ERROR_INPUT,)),
                  Cond("realm_state", _lazy(lambda: self._realm(rd).state != REALM_NEW), (ERROR_REALM,))]
        failures = observable(conds, self._DATA_ORDER)
        if failures:
            return failures
        assert w is not None
        w.rtt.entries[w.rtt.index(ipa)] = Entry(ASSIGNED, RAM, data)
        self.granules[data] = DATA
        return [(SUCCESS,)]

    def data_create_unknown(self, rd: int, data: int, ipa: int) -> list[Outcome]:
        """B4.3.2: a DATA granule at ipa, RIPAS unchanged (A5.3.5); any realm state."""
        conds, w = self._data_conds(rd, data, ipa)
        failures = observable(conds, self._DATA_ORDER)
        if failures:
            return failures
        assert w is not None
        w.rtt.entries[w.rtt.index(ipa)] = Entry(ASSIGNED, w.rtte.ripas, data)
        self.granules[data] = DATA
        return [(SUCCESS,)]

    def data_destroy(self, rd: int, ipa: int) -> list[Outcome]:
        """B4.3.3: unmap the DATA granule at ipa (RIPAS RAM becomes DESTROYED); outputs data, top."""
        conds = [Cond(c.name, c.holds, (ERROR_INPUT, None, 0)) for c in self._rd_conds(rd) + [
            Cond("ipa_align", ipa % GRANULE != 0, (ERROR_INPUT,)),
            Cond("ipa_bound", not self.protected(ipa), (ERROR_INPUT,))]]
        w = _walk_or_none(lambda: self._realm(rd).walk(ipa, PAGE_LEVEL), conds)
        err = (rtt_error(w.level), None, self.skip_non_live(w.rtt, ipa)) if w else (None,)
        conds += [Cond("rtt_walk", None if w is None else w.level < PAGE_LEVEL, err),
                  Cond("rtte_state", None if w is None else w.rtte.state != ASSIGNED, err)]
        failures = observable(conds, [(["rd_bound", "rd_state"], ["rtt_walk", "rtte_state"]),
                                      (["ipa_bound"], ["rtt_walk", "rtte_state"])])
        if failures:
            return failures
        assert w is not None
        old = w.rtte
        w.rtt.entries[w.rtt.index(ipa)] = Entry(UNASSIGNED, DESTROYED if old.ripas == RAM else old.ripas)
        self.granules[old.addr] = DELEGATED
        return [(SUCCESS, old.addr, self.skip_non_live(w.rtt, ipa))]

    # -- RMI_RTT_MAP_UNPROTECTED / RMI_RTT_UNMAP_UNPROTECTED ----------------------------------------

    def rtt_map_unprotected(self, rd: int, ipa: int, level: int, desc: int) -> list[Outcome]:
        """B4.3.19: an ASSIGNED_NS entry at ipa, level from the Host's descriptor."""
        addr = desc & ADDR_MASK
        conds = self._rd_conds(rd) + [
            Cond("attr_valid", not desc_valid_for_unprotected(desc), (ERROR_INPUT,)),
            Cond("level_bound", not self.level_block_or_page(level), (ERROR_INPUT,)),
            Cond("addr_align", not level_aligned(addr, level), (ERROR_INPUT,)),
            Cond("addr_bound", addr >= PA_LIMIT_NO_LPA2, (ERROR_INPUT,)),
            Cond("ipa_align", not level_aligned(ipa, level), (ERROR_INPUT,)),
            Cond("ipa_bound", ipa >= 1 << self.ipa_width or self.protected(ipa), (ERROR_INPUT,)),
        ]
        w = _walk_or_none(lambda: self._realm(rd).walk(ipa, level), conds)
        err = (rtt_error(w.level if w else 0),)
        conds += [Cond("rtt_walk", None if w is None else w.level < level, err),
                  Cond("rtte_state", None if w is None else w.rtte.state != UNASSIGNED_NS, err)]
        failures = observable(conds, [(["rd_bound", "rd_state"], ["rtt_walk", "rtte_state"]),
                                      (["level_bound", "ipa_bound"], ["rtt_walk", "rtte_state"])])
        if failures:
            return failures
        assert w is not None
        w.rtt.entries[w.rtt.index(ipa)] = Entry(ASSIGNED_NS, EMPTY, addr, desc & (MEMATTR_HOST_MASK | S2AP_MASK))
        return [(SUCCESS,)]

    def rtt_unmap_unprotected(self, rd: int, ipa: int, level: int) -> list[Outcome]:
        """B4.3.22: the ASSIGNED_NS entry at ipa, level becomes UNASSIGNED_NS; output top."""
        conds = [Cond(c.name, c.holds, (ERROR_INPUT, 0)) for c in self._rd_conds(rd) + [
            Cond("level_bound", not self.level_block_or_page(level), (ERROR_INPUT,)),
            Cond("ipa_align", not level_aligned(ipa, level), (ERROR_INPUT,)),
            Cond("ipa_bound", ipa >= 1 << self.ipa_width or self.protected(ipa), (ERROR_INPUT,))]]
        w = _walk_or_none(lambda: self._realm(rd).walk(ipa, level), conds)
        err = (rtt_error(w.level), self.skip_non_live(w.rtt, ipa)) if w else (None,)
        conds += [Cond("rtt_walk", None if w is None else w.level < level, err),
                  Cond("rtte_state", None if w is None else w.rtte.state != ASSIGNED_NS, err)]
        failures = observable(conds, [(["rd_bound", "rd_state"], ["rtt_walk", "rtte_state"]),
                                      (["level_bound", "ipa_bound"], ["rtt_walk", "rtte_state"])])
        if failures:
            return failures
        assert w is not None
        w.rtt.entries[w.rtt.index(ipa)] = Entry(UNASSIGNED_NS)
        return [(SUCCESS, self.skip_non_live(w.rtt, ipa))]

    # -- RMI_REALM_ACTIVATE / granule bookkeeping -------------------------------------------------------

    def realm_activate(self, rd: int) -> list[Outcome]:
        """B4.3.8: NEW -> ACTIVE."""
        conds = self._rd_conds(rd) + [Cond("realm_state", _lazy(lambda: self._realm(rd).state != REALM_NEW),
                                           (ERROR_REALM,))]
        failures = observable(conds, [(["rd_bound", "rd_state"], ["realm_state"])])
        if failures:
            return failures
        self.state = REALM_ACTIVE
        return [(SUCCESS,)]

    def delegated(self, pa: int) -> None:
        """The host delegated pa (B4.3.5)."""
        self.granules[pa] = DELEGATED

    def set_granule(self, pa: int, state: str) -> None:
        """A granule the test made by commands the model does not follow (REC_AUX)."""
        self.granules[pa] = state

    def rec_created(self, pa: int) -> None:
        """RMI_REC_CREATE (B4.3.12.3): ripas_addr and ripas_top are zero."""
        self.granules[pa] = REC
        self.recs[pa] = RecRipas()


def _walk_or_none(walk: Callable[[], Walk], conds: Sequence[Cond]) -> Optional[Walk]:
    """The command's walk, or None when it is not well formed (an earlier INPUT condition holds:
    rd is no RD, the address lies outside the IPA space, the level is no level of the tree)."""
    try:
        return walk()
    except _IllFormed:
        assert any(c.holds for c in conds), "a walk that is not well formed with no earlier failure"
        return None
    except IndexError:
        assert any(c.holds for c in conds), "a walk below the tree with no earlier failure"
        return None
