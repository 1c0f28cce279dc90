"""realm_call.lock_realm_page (and its _walk_locked) against the version before its arithmetic
was rearranged (hypothesis): over random RTT contents (tables pointing anywhere, pages, blocks,
invalid entries with any HIPAS/RIPAS, NS bits, OAs up to bit 63), every consistent (IPA width,
start level), DRAM bases below and above 2^32 and IPAs in and past the IPA space, the new code
takes the same locks in the same order with the same hints, loads the same entries and returns
the same RealmPage.

The oracle is the earlier code, kept here, with one later rule: only a valid protected entry is RAM
(an invalid one whose bits decode as ASSIGNED RAM is not). The RMM is a stand-in: a granule table that records
lock_known/unlock and a memory whose entries are drawn as the walk loads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rmm_mp.hw.granule import SUB_ROOT
from rmm_mp.rmm import realm_call, s2tt
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.realm_call import EMPTY, FAULT, RAM, RealmPage
from rmm_mp.rmm.s2tt import Kind

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=700, print_blob=False,
                 phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow])
_SHIFTS = tuple(s2tt.level_shift(level) for level in range(s2tt.PAGE_LEVEL + 1))
CONSISTENT = [(w, sl) for sl in range(4) for w in range(s2tt.MIN_IPA_BITS, s2tt.MAX_IPA_BITS + 1)
              if s2tt.start_level_consistent(w, sl, 48)]


def old_lock_realm_page(rmm: Any, ctx: Any, ipa: int) -> RealmPage:
    """lock_realm_page before the level-3 shortcut (the oracle)."""
    llt, level, desc = old_walk_locked(rmm, ctx, ipa)
    kind_bits = desc & s2tt.DESC_TYPE_MASK
    # RAM only for a valid protected entry (a block at level 1 or 2, a page at level 3): the
    # rule both walks follow since an invalid entry decoding as ASSIGNED RAM stopped being RAM.
    if not desc & s2tt.NS and kind_bits == (s2tt.DESC_PAGE if level == s2tt.PAGE_LEVEL
                                            else s2tt.DESC_BLOCK if level else -1):
        size = 1 << _SHIFTS[level]
        return RealmPage(RAM, level, (desc & s2tt.OA_MASK & ~(size - 1)) + (ipa & (size - 1) & ~0xFFF), llt)
    kind, ripas = s2tt.decode(desc, level)
    llt.unlock()
    if ripas == s2tt.RIPAS_EMPTY and kind in (Kind.ASSIGNED, Kind.UNASSIGNED):
        return RealmPage(EMPTY, level, 0, None)
    return RealmPage(FAULT, level, 0, None)


def old_walk_locked(rmm: Any, ctx: Any, ipa: int) -> Any:
    """_walk_locked before its one-digit arithmetic (the oracle)."""
    granules = rmm.granules
    load = rmm.memory.view.load_u64
    base = granules.base
    level = ctx.start_level
    table = (ctx.rtt_base - base) >> 12
    held = granules.lock_known(table, GranuleState.RTT, level | SUB_ROOT)
    sl_index = (ipa & ((1 << ctx.ipa_width) - 1)) >> _SHIFTS[level]
    if sl_index >> s2tt.STRIDE:
        table += sl_index >> s2tt.STRIDE
        child = granules.lock_known(table, GranuleState.RTT, level | SUB_ROOT)
        granules.unlock(held.idx)
        held = child
    index = sl_index & (s2tt.ENTRIES - 1)
    while True:
        desc = load((table << 12) + (index << 3))
        if level == s2tt.PAGE_LEVEL or desc & s2tt.DESC_TYPE_MASK != s2tt.DESC_TABLE:
            return held, level, desc
        table = ((desc & s2tt.OA_MASK) - base) >> 12
        level += 1
        child = granules.lock_known(table, GranuleState.RTT, level)
        granules.unlock(held.idx)
        held = child
        index = (ipa >> _SHIFTS[level]) & (s2tt.ENTRIES - 1)


class _Guard:
    def __init__(self, table: "_Table", idx: int) -> None:
        self.table, self.idx = table, idx

    def unlock(self) -> None:
        self.table.unlock(self.idx)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Guard) and other.idx == self.idx


class _Table:
    def __init__(self, base: int, log: list) -> None:
        self.base, self.log = base, log

    def lock_known(self, idx: int, state: int, sub: int) -> _Guard:
        self.log.append(("lock", idx, state, sub))
        return _Guard(self, idx)

    def unlock(self, idx: int) -> None:
        self.log.append(("unlock", idx))


class _View:
    """Entries drawn on first load and remembered (the same RTT contents for both walks)."""

    def __init__(self, draw: Any, entries: dict, log: list) -> None:
        self.draw, self.entries, self.log = draw, entries, log

    def load_u64(self, offset: int) -> int:
        self.log.append(("load", offset))
        if offset not in self.entries:
            self.entries[offset] = self.draw(_descs)
        return self.entries[offset]


@dataclass
class _Ctx:
    ipa_width: int
    start_level: int
    rtt_base: int


@dataclass
class _Rmm:
    granules: _Table
    memory: Any


_oa = st.one_of(st.integers(0, (1 << 36) - 1).map(lambda g: g << 12), st.integers(0, (1 << 64) - 1))
_descs = st.one_of(
    _oa.map(lambda pa: s2tt.table(pa & s2tt.OA_MASK)),                                  # a table
    st.tuples(_oa, st.sampled_from([1, 3])).map(lambda t: (t[0] & ~3) | t[1]),         # page / block, any bits
    st.tuples(_oa, st.integers(0, 3)).map(lambda t: s2tt.assigned(t[0] & s2tt.OA_MASK, 3, t[1])
                                          if t[1] < 3 else t[0] & ~3),                  # (in)valid ASSIGNED
    st.sampled_from([s2tt.UNASSIGNED_EMPTY, s2tt.UNASSIGNED_RAM, s2tt.UNASSIGNED_DESTROYED, s2tt.UNASSIGNED_NS]),
    _oa.map(lambda pa: s2tt.assigned_ns(pa, 3)), _oa.map(lambda pa: s2tt.assigned_ns(pa, 2)),
    st.integers(0, (1 << 64) - 1),
)


@FIXED
@given(data=st.data(), shape=st.sampled_from(CONSISTENT),
       base=st.one_of(st.sampled_from([0, 0x8000_0000, 0x8000_1000, 0x1_0000_0000, (1 << 48) - (1 << 32)]),
                      st.integers(0, (1 << 36) - 1).map(lambda g: g << 12)),
       root=st.integers(0, 1 << 20))
def test_lock_realm_page_matches_the_earlier_arithmetic(data: Any, shape: tuple, base: int, root: int) -> None:
    width, start = shape
    ctx = _Ctx(width, start, base + (root << 12))
    ipa = data.draw(st.one_of(st.integers(0, (1 << width) - 1).map(lambda a: a & ~0xFFF),
                              st.integers(0, (1 << 64) - 1)))
    entries: dict = {}
    runs = []
    for walk in (old_lock_realm_page, lambda rmm, c, a: realm_call.lock_realm_page(Call(rmm, c), a)):
        log: list = []
        rmm = _Rmm(_Table(base, log), type("M", (), {"view": _View(data.draw, entries, log)})())
        page = walk(rmm, ctx, ipa)
        runs.append((page.kind, page.level, page.pa, page.llt, log))
    assert runs[0] == runs[1]


@dataclass
class Call:
    """The two fields of RealmCall that lock_realm_page reads."""

    rmm: Any
    ctx: Any
