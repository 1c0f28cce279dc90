"""Properties of rmm_mp/rmm/s2tt.py: entry encoding, geometry, fold/unfold, skip_non_live and the
hand-over-hand walk (DEN0137 1.0-rel0 A5.5; rmi.md section 6).

Every property is checked against a reference written here from the specification's words, not
from the code under test: the (s2sz, start level) table of rmi.md 6.2, RttSkipNonLiveEntries
(B3.76) over entries whose kind the test chose itself, and a pure walk over a Python model of
the RTT tree that was written into a real machine's memory.

Hypothesis runs derandomized with no example database (tests/README.md: fixed seeds).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.hw.granule import host_owner
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.handlers.rmi_rtt import _fold
from rmm_mp.rmm.s2tt import Kind, S2Ctx

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=200)
WALKS = settings(derandomize=True, database=None, deadline=None, max_examples=100)

ENTRIES = 512
PA_LIMIT = 1 << 48
EMPTY, RAM, DESTROYED = 0, 1, 2

# rmi.md 6.2, non-LPA2, 4 KiB granules: start level -> (lowest s2sz, highest s2sz, roots(s2sz)).
GEOMETRY_TABLE = {
    0: (40, 48, lambda s2sz: 1),
    1: (32, 43, lambda s2sz: 1 if s2sz <= 39 else 2 ** (s2sz - 39)),
    2: (32, 34, lambda s2sz: 2 ** (s2sz - 30)),
}
VALID_GEOMETRIES = [(s2sz, level) for level, (lo, hi, _) in GEOMETRY_TABLE.items() for s2sz in range(lo, hi + 1)]

ripas_st = st.sampled_from([EMPTY, RAM, DESTROYED])
memattr_st = st.sampled_from([0, 1, 2, 3, 5, 6, 7])  # 0b100 is reserved (FWB)
s2ap_st = st.integers(0, 3)


def entry_size(level: int) -> int:
    """Bytes one entry at ``level`` maps: 4 KiB at level 3, times 512 per level up."""
    return 4096 * 512 ** (3 - level)


def aligned_pa(level: int) -> st.SearchStrategy[int]:
    """A PA below 2^48 aligned to the size of a level-``level`` entry."""
    size = entry_size(level)
    return st.integers(0, PA_LIMIT // size - 1).map(lambda n: n * size)


@st.composite
def host_descs(draw: st.DrawFn, level: int) -> int:
    """A valid RMI_RTT_MAP_UNPROTECTED descriptor for ``level``: OA, MemAttr, S2AP only."""
    return draw(aligned_pa(level)) | draw(memattr_st) << 2 | draw(s2ap_st) << 6


# -- the encoding, bit by bit ----------------------------------------------------------------

PA = 0x8765_4000


@pytest.mark.parametrize("desc, expected", [
    # Invalid descriptors: HIPAS in bits [4:2], RIPAS in [6:5], NS in 55 (s2tt's docstring).
    (s2tt.UNASSIGNED_EMPTY, 0),
    (s2tt.UNASSIGNED_RAM, 1 << 5),
    (s2tt.UNASSIGNED_DESTROYED, 2 << 5),
    (s2tt.UNASSIGNED_NS, 1 << 55),
    (s2tt.assigned(PA, 3, EMPTY), PA | 1 << 2),
    (s2tt.assigned(PA, 3, DESTROYED), PA | 1 << 2 | 2 << 5),
    # Valid: VMSAv8-64 stage-2 page [1:0] = 0b11 / block 0b01, MemAttr[5:2] = 0b0110 (FWB:
    # Normal Write-Back), S2AP[7:6] = 0b11 (read/write), SH[9:8] = 0b11 (Inner Shareable),
    # AF[10]; unprotected ones also XN[54:53] = 0b10 and NS[55].
    (s2tt.assigned(PA, 3, RAM), PA | 0b11 | 0b0110 << 2 | 0b11 << 6 | 0b11 << 8 | 1 << 10),
    (s2tt.assigned(0x4000_0000, 2, RAM) & 0x3, 0b01),
    (s2tt.assigned_ns(PA | 0b0101 << 2 | 0b01 << 6, 3),
     PA | 0b11 | 0b0101 << 2 | 0b01 << 6 | 0b11 << 8 | 1 << 10 | 0b10 << 53 | 1 << 55),
    (s2tt.table(PA), PA | 0b11),
], ids=["unassigned-empty", "unassigned-ram", "unassigned-destroyed", "unassigned-ns", "assigned-empty",
        "assigned-destroyed", "assigned-ram-page", "assigned-ram-block", "assigned-ns-page", "table"])
def test_entries_have_the_documented_bits(desc: int, expected: int) -> None:
    """The round trips below hold for any self-consistent encoding; these pin the one s2tt's
    docstring documents (and, for valid entries, the one the architecture's walker reads)."""
    assert desc == expected, f"{desc:#x} != {expected:#x}"


# -- encoding round trips ------------------------------------------------------------------


@FIXED
@given(st.integers(0, 3), ripas_st)
def test_unassigned_round_trip(level: int, ripas: int) -> None:
    """unassigned(ripas) decodes as (UNASSIGNED, ripas) at every level; it is invalid to the
    hardware, holds no PA and counts for no refcount."""
    desc = s2tt.unassigned(ripas)
    assert s2tt.decode(desc, level) == (Kind.UNASSIGNED, ripas)
    assert desc & 0b1 == 0
    assert not s2tt.has_pa(desc, level) and not s2tt.counts_in_refcount(desc, level)
    assert not s2tt.is_table(desc, level)


def test_unassigned_ns_round_trip() -> None:
    """UNASSIGNED_NS decodes as (UNASSIGNED_NS, 0) at every level, is invalid, holds no PA and
    is not counted; it differs from every UNASSIGNED encoding."""
    for level in range(4):
        assert s2tt.decode(s2tt.UNASSIGNED_NS, level) == (Kind.UNASSIGNED_NS, 0)
        assert not s2tt.has_pa(s2tt.UNASSIGNED_NS, level)
        assert not s2tt.counts_in_refcount(s2tt.UNASSIGNED_NS, level)
    assert s2tt.UNASSIGNED_NS & 1 == 0
    assert s2tt.UNASSIGNED_NS not in {s2tt.unassigned(r) for r in (EMPTY, RAM, DESTROYED)}
    assert (s2tt.UNASSIGNED_EMPTY, s2tt.UNASSIGNED_RAM, s2tt.UNASSIGNED_DESTROYED) == tuple(
        s2tt.unassigned(r) for r in (EMPTY, RAM, DESTROYED))


@FIXED
@given(st.data(), st.integers(1, 3), ripas_st)
def test_assigned_round_trip(data: st.DataObject, level: int, ripas: int) -> None:
    """assigned(pa, level, ripas) for a level-aligned PA below 2^48 decodes as (ASSIGNED, ripas),
    gives its PA back as output address, holds a PA and counts in the refcount; it is a valid
    page (level 3) or block (levels 1, 2) descriptor exactly when the RIPAS is RAM."""
    pa = data.draw(aligned_pa(level))
    desc = s2tt.assigned(pa, level, ripas)
    assert s2tt.decode(desc, level) == (Kind.ASSIGNED, ripas)
    assert s2tt.output_address(desc, level) == pa
    assert s2tt.has_pa(desc, level) and s2tt.counts_in_refcount(desc, level)
    assert desc & 0b11 == ((0b11 if level == 3 else 0b01) if ripas == RAM else 0)
    assert not s2tt.is_table(desc, level)


@FIXED
@given(st.data(), st.integers(1, 3))
def test_assigned_ns_round_trip(data: st.DataObject, level: int) -> None:
    """assigned_ns(host_desc, level) for a valid host descriptor decodes as (ASSIGNED_NS, 0), keeps
    the host's OA, MemAttr and S2AP, adds AF and NS, is a valid page/block, holds a PA (live for
    `top`) but does not count in the refcount (A5.5.8)."""
    host = data.draw(host_descs(level))
    desc = s2tt.assigned_ns(host, level)
    assert s2tt.decode(desc, level) == (Kind.ASSIGNED_NS, 0)
    assert s2tt.output_address(desc, level) == host & s2tt.OA_MASK
    assert desc & s2tt.NS_HOST_ATTRS == host & s2tt.NS_HOST_ATTRS
    assert desc & (s2tt.AF | s2tt.NS) == s2tt.AF | s2tt.NS
    assert desc & 0b11 == (0b11 if level == 3 else 0b01)
    assert s2tt.has_pa(desc, level) and not s2tt.counts_in_refcount(desc, level)


@FIXED
@given(st.data(), st.integers(0, 2))
def test_table_round_trip(data: st.DataObject, level: int) -> None:
    """table(pa) at levels 0..2 decodes as (TABLE, 0), gives pa back, holds a PA and counts."""
    pa = data.draw(aligned_pa(3))
    desc = s2tt.table(pa)
    assert s2tt.decode(desc, level) == (Kind.TABLE, 0)
    assert s2tt.is_table(desc, level)
    assert s2tt.output_address(desc, level) == pa
    assert s2tt.has_pa(desc, level) and s2tt.counts_in_refcount(desc, level)


@FIXED
@given(st.data(), st.integers(1, 3), ripas_st)
def test_output_address_ignores_offset_bits(data: st.DataObject, level: int, ripas: int) -> None:
    """output_address aligns to the entry's size: the OA bits below it (not part of a block's
    address) are not reported, for ASSIGNED and ASSIGNED_NS entries alike."""
    pa = data.draw(aligned_pa(level))
    low = data.draw(st.integers(0, entry_size(level) // 4096 - 1)) * 4096
    assert s2tt.output_address(s2tt.assigned(pa | low, level, ripas), level) == pa
    assert s2tt.output_address(s2tt.assigned_ns(pa | low, level), level) == pa


# -- geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize("pa_bits", [48, 44, 42, 40])
def test_start_level_and_root_count_table(pa_bits: int) -> None:
    """start_level_consistent over every s2sz 30..50 and level -1..4 matches rmi.md 6.2 (level 0:
    40..48 and a PA range of at least 44 bits; level 1: 32..43; level 2: 32..34; level 3 and -1
    never without LPA2), and num_root_rtts gives the table's root count (at most 16) for every
    valid pair."""
    for s2sz in range(30, 51):
        for level in range(-1, 5):
            lo, hi, roots = GEOMETRY_TABLE.get(level, (1, 0, None))
            expected = lo <= s2sz <= hi and (level != 0 or pa_bits >= 44)
            assert s2tt.start_level_consistent(s2sz, level, pa_bits) == expected, (s2sz, level, pa_bits)
            if lo <= s2sz <= hi:
                assert roots is not None
                assert s2tt.num_root_rtts(s2sz, level) == roots(s2sz) <= 16, (s2sz, level)


def test_geometry_helpers() -> None:
    """block_size, level_shift, entry_index and is_aligned agree with 4 KiB x 512^(3 - level)."""
    for level in range(4):
        size = entry_size(level)
        assert s2tt.block_size(level) == size == 1 << s2tt.level_shift(level)
        ipa = 0x0000_7ABC_DEF1_2000
        assert s2tt.entry_index(ipa, level) == (ipa // size) % ENTRIES
        assert s2tt.is_aligned(5 * size, level) and (level == 3 or not s2tt.is_aligned(5 * size + 4096, level))


@FIXED
@given(st.sampled_from(VALID_GEOMETRIES), st.data())
def test_root_slot(geometry: tuple[int, int], data: st.DataObject) -> None:
    """S2Ctx.root_slot(ipa) names the concatenated root and the entry in it that cover ipa:
    root x 512 + index == ipa // (start-level entry size), the root exists, and IPA bits at or
    above s2sz are ignored. in_par is the lower half of the IPA space."""
    s2sz, level = geometry
    roots = s2tt.num_root_rtts(s2sz, level)
    ctx = S2Ctx(s2sz, level, roots, 0x8000_0000)
    ipa = data.draw(st.integers(0, (1 << s2sz) - 1))
    root, index = ctx.root_slot(ipa)
    assert root * ENTRIES + index == ipa // entry_size(level)
    assert 0 <= root < roots and 0 <= index < ENTRIES
    assert ctx.root_slot(ipa | (1 << s2sz)) == (root, index)
    assert ctx.in_par(ipa) == (ipa < 1 << (s2sz - 1))
    assert (ctx.ipa_size, ctx.par_size) == (1 << s2sz, 1 << (s2sz - 1))


# -- unfold and fold -------------------------------------------------------------------------


@st.composite
def foldable_parents(draw: st.DrawFn) -> tuple[int, int, str]:
    """(parent entry, child level, kind) for every kind RTT_CREATE can unfold and RTT_FOLD can
    fold back: UNASSIGNED (any RIPAS) and UNASSIGNED_NS at parent levels 0..2; ASSIGNED (any
    RIPAS) and ASSIGNED_NS blocks at parent levels 1..2 (child levels 2, 3)."""
    kind = draw(st.sampled_from(["unassigned", "unassigned_ns", "assigned", "assigned_ns"]))
    if kind == "unassigned":
        level = draw(st.integers(1, 3))
        return s2tt.unassigned(draw(ripas_st)), level, kind
    if kind == "unassigned_ns":
        return s2tt.UNASSIGNED_NS, draw(st.integers(1, 3)), kind
    level = draw(st.integers(2, 3))
    pa = draw(aligned_pa(level - 1))
    if kind == "assigned":
        return s2tt.assigned(pa, level - 1, draw(ripas_st)), level, kind
    # Any valid host attributes: the fold must carry them to the block (B4.3.17.3 rtte_attr).
    host = draw(host_descs(level - 1))
    return s2tt.assigned_ns(pa | (host & s2tt.NS_HOST_ATTRS), level - 1), level, kind


@FIXED
@given(foldable_parents())
def test_unfold_then_fold_gives_parent_back(case: tuple[int, int, str]) -> None:
    """unfolded(parent, level) maps the same thing as the parent (A5.5.7: same state and RIPAS in
    every entry; contiguous output addresses from the parent's for ASSIGNED and ASSIGNED_NS), and
    folding the result (rmi_rtt._fold, with the refcount the unfolded table would have: 512 for
    ASSIGNED, else 0) gives back exactly the parent entry; only an ASSIGNED fold moves the
    table's 512 references to the block."""
    parent, level, kind = case
    children = s2tt.unfolded(parent, level)
    assert len(children) == ENTRIES
    parent_kind, parent_ripas = s2tt.decode(parent, level - 1)
    step = entry_size(level)
    for i, child in enumerate(children):
        assert s2tt.decode(child, level) == (parent_kind, parent_ripas)
        if kind.startswith("assigned"):
            assert s2tt.output_address(child, level) == s2tt.output_address(parent, level - 1) + i * step
    refcount = ENTRIES if kind == "assigned" else 0
    assert _fold(tuple(children), refcount, level) == (parent, kind == "assigned")


@pytest.mark.parametrize("level", [1, 2, 3])
def test_unfold_of_table_is_refused(level: int) -> None:
    """A TABLE entry has nothing to unfold (RTT_CREATE refuses it earlier with rtte_state); at
    every level, the last included (the parent, at level 2, is a table, not a level-3 page)."""
    with pytest.raises(ValueError):
        s2tt.unfolded(s2tt.table(0x8000_0000), level)


@FIXED
@given(st.data(), st.integers(2, 3))
def test_unfold_assigned_ns_keeps_host_attributes(data: st.DataObject, level: int) -> None:
    """Unfolding an ASSIGNED_NS block with any host MemAttr/S2AP gives children with the same
    attributes (TF-RMM fix 15fc44e4's unfold half)."""
    host = data.draw(host_descs(level - 1))
    children = s2tt.unfolded(s2tt.assigned_ns(host, level - 1), level)
    assert len(children) == ENTRIES     # else the loop below could check fewer, or none
    for child in children:
        assert child & s2tt.NS_HOST_ATTRS == host & s2tt.NS_HOST_ATTRS


# -- skip_non_live -----------------------------------------------------------------------------


@st.composite
def tables(draw: st.DrawFn) -> tuple[int, list[tuple[str, int]]]:
    """(level, 512 (kind, descriptor) pairs) with kinds valid at that level: a few live entries
    (ASSIGNED, ASSIGNED_NS, TABLE, as the level allows) at random places, the rest a repeating
    pattern of non-live ones (UNASSIGNED with any RIPAS, UNASSIGNED_NS)."""
    level = draw(st.integers(0, 3))
    live_kinds = (["assigned", "assigned_ns"] if level >= 1 else []) + (["table"] if level <= 2 else [])
    pattern = draw(st.lists(st.sampled_from(["unassigned", "unassigned_ns"]), min_size=1, max_size=4))
    ripas = draw(ripas_st)
    out: list[tuple[str, int]] = [(k, s2tt.unassigned(ripas) if k == "unassigned" else s2tt.UNASSIGNED_NS)
                                  for k in (pattern * ENTRIES)[:ENTRIES]]
    live = draw(st.dictionaries(st.integers(0, ENTRIES - 1), st.sampled_from(live_kinds), max_size=6))
    for index, kind in live.items():
        if kind == "assigned":
            desc = s2tt.assigned(draw(aligned_pa(level)), level, draw(ripas_st))
        elif kind == "assigned_ns":
            desc = s2tt.assigned_ns(draw(host_descs(level)), level)
        else:
            desc = s2tt.table(draw(aligned_pa(3)))
        out[index] = (kind, desc)
    return level, out


def test_skip_non_live_matches_brute_force() -> None:
    """skip_non_live(table, level, index, ipa) equals B3.76 RttSkipNonLiveEntries computed by
    brute force over entries whose kinds the test chose: ipa itself if the entry at index is live
    (ASSIGNED, ASSIGNED_NS or TABLE), else the IPA of the first live entry after it in the same
    RTT, else the IPA just past the RTT; ipa need not be aligned to the level."""
    with Machine.create("host", cpus=1) as machine:
        table_idx = 7

        @FIXED
        @given(tables(), st.data())
        def check(table: tuple[int, list[tuple[str, int]]], data: st.DataObject) -> None:
            level, entries = table
            s2tt.fill(machine.memory, table_idx, [desc for _, desc in entries])
            size = entry_size(level)
            span = size * ENTRIES
            base = data.draw(st.integers(0, PA_LIMIT // span - 1)) * span if level > 0 else 0
            index = data.draw(st.integers(0, ENTRIES - 1))
            ipa = base + index * size + data.draw(st.integers(0, size // 4096 - 1)) * 4096
            live = [kind in ("assigned", "assigned_ns", "table") for kind, _ in entries]
            later = [base + j * size for j in range(index + 1, ENTRIES) if live[j]]
            expected = ipa if live[index] else (later[0] if later else base + span)
            assert s2tt.skip_non_live(machine.memory, table_idx, level, index, ipa) == expected

        check()


# -- the walk -------------------------------------------------------------------------------------


class _Tree:
    """A random RTT tree written into a machine's memory, and its Python model.

    model[granule index] = {entry index: child granule index} for TABLE entries; every other
    entry holds a non-table filler chosen per table."""

    def __init__(self, machine: Machine, alloc: "list[int]", s2sz: int, start: int) -> None:
        self.machine = machine
        self.table = machine.granule_table(host_owner(os.getpid()))
        self.cpu = machine.cpu(0)
        self.alloc = alloc
        self.s2sz, self.start = s2sz, start
        count = s2tt.num_root_rtts(s2sz, start)
        first = alloc[0]
        alloc[0] += count
        self.roots = [self._new_rtt(first + n, start, s2tt.UNASSIGNED_EMPTY) for n in range(count)]
        self.model: dict[int, dict[int, int]] = {r: {} for r in self.roots}
        self.ctx = S2Ctx(s2sz, start, count, self.table.addr(self.roots[0]))

    def _new_rtt(self, idx: int, level: int, filler: int) -> int:
        """Delegate granule idx (RMI_GRANULE_DELEGATE), then white box: state RTT under its lock,
        512 entries of ``filler``."""
        assert self.cpu.smc(RmiFid.RMI_GRANULE_DELEGATE, self.table.addr(idx))[0] == 0
        with self.table.lock_known(idx, GranuleState.DELEGATED):
            self.table.set_state(idx, GranuleState.RTT)
            s2tt.fill(self.machine.memory, idx, [filler] * ENTRIES)
        return idx

    def slot(self, ipa: int) -> tuple[int, int]:
        """Reference: (root granule, entry) at the start level, from sizes alone."""
        n = ipa // entry_size(self.start)
        return self.roots[n // ENTRIES], n % ENTRIES

    def add_path(self, ipa: int, depth: int, fillers: "list[int]") -> None:
        """Make tables for ipa down to ``depth`` (levels start + 1 .. depth)."""
        current, index = self.slot(ipa)
        for level in range(self.start + 1, depth + 1):
            child = self.model[current].get(index)
            if child is None:
                child = self._new_rtt(self.alloc[0], level, fillers[level])
                self.alloc[0] += 1
                self.model[child] = {}
                self.model[current][index] = child
                with self.table.lock_known(current, GranuleState.RTT):
                    s2tt.write(self.machine.memory, current, index, s2tt.table(self.table.addr(child)))
            current, index = child, (ipa // entry_size(level)) % ENTRIES

    def reference_walk(self, ipa: int, target: int) -> tuple[int, int, int]:
        """(level, table granule, entry index) where a walk towards ``target`` stops."""
        current, index = self.slot(ipa)
        level = self.start
        while level < target and index in self.model[current]:
            current = self.model[current][index]
            level += 1
            index = (ipa // entry_size(level)) % ENTRIES
        return level, current, index


FILLERS = {
    0: [s2tt.UNASSIGNED_EMPTY, s2tt.UNASSIGNED_NS, s2tt.UNASSIGNED_DESTROYED],
    1: [s2tt.UNASSIGNED_RAM, s2tt.assigned(0x4000_0000, 1, RAM), s2tt.assigned_ns(0x8000_0000 | 0xD8, 1),
        s2tt.assigned(0xC000_0000, 1, DESTROYED)],
    2: [s2tt.UNASSIGNED_EMPTY, s2tt.assigned(0x20_0000, 2, RAM), s2tt.assigned_ns(0x40_0000 | 0x18, 2),
        s2tt.assigned(0x60_0000, 2, EMPTY), s2tt.UNASSIGNED_NS],
    3: [s2tt.assigned(0x1000, 3, RAM), s2tt.assigned_ns(0x2000, 3), s2tt.UNASSIGNED_RAM, s2tt.table(0x8000_0000)],
}
"""Non-table entries per level (level-3 'table' bits are a page descriptor: never followed)."""


@st.composite
def trees(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]], list[int], list[tuple[int, int]]]:
    """(s2sz, start level, paths (ipa, depth), fillers per level, queries (ipa, target level))."""
    s2sz, start = draw(st.sampled_from(VALID_GEOMETRIES))
    roots = s2tt.num_root_rtts(s2sz, start)
    span = min(entry_size(start) * ENTRIES, 1 << s2sz)
    # root number and offset drawn apart, so that every concatenated root gets its share
    ipa_st = st.tuples(st.integers(0, roots - 1), st.integers(0, span // 4096 - 1)).map(
        lambda r: r[0] * span + r[1] * 4096)
    paths = draw(st.lists(st.tuples(ipa_st, st.integers(start, 3)), min_size=1, max_size=5))
    fillers = [draw(st.sampled_from(FILLERS[level])) for level in range(4)]
    near = st.sampled_from([ipa for ipa, _ in paths]).flatmap(
        lambda a: st.integers(0, 3).map(lambda k: (a & ~(entry_size(k) - 1)) | (a & (entry_size(k) - 1) & ~0xFFF)))
    queries = draw(st.lists(st.tuples(st.one_of(near, ipa_st), st.integers(start, 3)), min_size=1, max_size=6))
    return s2sz, start, paths, fillers, queries


def test_walk_matches_reference() -> None:
    """s2tt.walk over random RTT trees built in a real machine's memory (roots and tables
    delegated, set to RTT under their locks, filled with random non-table entries; up to 16
    concatenated roots) stops at the same (level, table, index) as a pure reference walk over the
    tree's model; afterwards it holds exactly one lock, that of the table it returns, and when
    the target lies in a root other than root 0 it has released root 0 (which the caller locked)."""
    with Machine.create("host", cpus=1) as machine:
        alloc = [0]
        limit = machine.granule_count - 512  # stay clear of the Secure region at the top of DRAM

        @WALKS
        @given(trees())
        def check(case: tuple[int, int, list[tuple[int, int]], list[int], list[tuple[int, int]]]) -> None:
            s2sz, start, paths, fillers, queries = case
            if alloc[0] + 16 + 3 * len(paths) > limit:
                alloc[0] = _recycle(machine)
            tree = _Tree(machine, alloc, s2sz, start)
            for ipa, depth in paths:
                tree.add_path(ipa, depth, fillers)
            granules = tree.table
            for ipa, target in queries:
                root0 = granules.lock_known(tree.roots[0], GranuleState.RTT)
                walk = s2tt.walk(granules, machine.memory, tree.ctx, root0, ipa, target)
                try:
                    assert (walk.level, walk.llt.idx, walk.index) == tree.reference_walk(ipa, target)
                    assert granules.held_by(granules.owner) == [walk.llt.idx]
                    if tree.slot(ipa)[0] != tree.roots[0]:
                        assert granules.holder(tree.roots[0]) == 0
                finally:
                    walk.llt.unlock()
            assert granules.held_by(granules.owner) == []

        check()


def _recycle(machine: Machine) -> int:
    """Return every RTT made by earlier examples to NS (white box: zero, DELEGATED, then
    RMI_GRANULE_UNDELEGATE) so that the allocator can start again from granule 0."""
    table = machine.granule_table(host_owner(os.getpid()))
    cpu = machine.cpu(0)
    for idx in range(machine.granule_count):
        if table.state(idx) == GranuleState.RTT:
            with table.lock_known(idx, GranuleState.RTT):
                machine.memory.zero(idx)
                table.set_state(idx, GranuleState.DELEGATED)
            assert cpu.smc(RmiFid.RMI_GRANULE_UNDELEGATE, table.addr(idx))[0] == 0
    return 0
