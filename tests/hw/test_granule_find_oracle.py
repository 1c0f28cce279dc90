"""GranuleTable.find, find_lock's address test and lock_two's tests and order, against the PA-based
versions they replaced (hypothesis), over random granule-aligned DRAM bases (0, below and above
2^30, 2^32 and near 2^48), sizes, and addresses around both ends of DRAM (unaligned, negative,
past 2^64).

The oracles are the earlier code, kept here: an address is a granule when it is granule aligned
and base <= addr < base + count * 4 KiB; lock_two locks the lower PA first. The new code tests
the offset from the base instead, which is the same test for a granule-aligned base (the platform
checker refuses any other: hw/platform.py); no lock is taken here (find_lock is recorded, not run).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rmm_mp.hw.granule import GRANULE_SIZE, GranuleTable

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=600, print_blob=False,
                 phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow])


def old_find(base: int, end: int, addr: int) -> int:
    """find() before it tested offsets (the oracle)."""
    if addr & (GRANULE_SIZE - 1) or not base <= addr < end:
        return -1
    return (addr - base) >> 12


def old_lock_two(base: int, end: int, addr_a: int, addr_b: int) -> "list[int] | None":
    """The addresses lock_two passed to find_lock, in order, before it tested offsets; None when
    it returned before any (the oracle)."""
    if addr_a == addr_b:
        return None
    if (addr_a & (GRANULE_SIZE - 1) or not base <= addr_a < end
            or addr_b & (GRANULE_SIZE - 1) or not base <= addr_b < end):
        return None
    return [addr_a, addr_b] if addr_a < addr_b else [addr_b, addr_a]


class _Recorded(GranuleTable):
    """A table with only its geometry: find_lock records the address and 'locks' it."""

    def find_lock(self, addr: int, expected_state: int) -> Any:
        self.calls.append(addr)     # type: ignore[attr-defined]
        return object()


def _table(base: int, count: int) -> _Recorded:
    t = object.__new__(_Recorded)
    t.base, t.count, t.end, t.span = base, count, base + count * GRANULE_SIZE, count * GRANULE_SIZE
    t.calls = []    # type: ignore[attr-defined]
    return t


bases = st.one_of(st.sampled_from([0, 0x8000_0000, 0x1_0000_0000, 0x3FFF_F000, (1 << 48) - (1 << 20)]),
                  st.integers(0, (1 << 48) >> 12).map(lambda g: g << 12))
counts = st.one_of(st.sampled_from([1, 2, 256, 1 << 20]), st.integers(1, 1 << 20))


@st.composite
def address(draw: Any, base: int, count: int) -> int:
    """An address near either end of DRAM, inside it, or anywhere (negative, past 2^64)."""
    end = base + count * GRANULE_SIZE
    anchor = draw(st.sampled_from([base, end, base + (count // 2) * GRANULE_SIZE, 0, 1 << 48, 1 << 64]))
    kind = draw(st.sampled_from(["granules", "bytes", "any"]))
    if kind == "granules":
        return anchor + draw(st.integers(-3, 3)) * GRANULE_SIZE
    if kind == "bytes":
        return anchor + draw(st.integers(-2 * GRANULE_SIZE, 2 * GRANULE_SIZE))
    return draw(st.integers(-(1 << 70), 1 << 70))


@FIXED
@given(data=st.data(), base=bases, count=counts)
def test_find_matches_the_pa_based_find(data: Any, base: int, count: int) -> None:
    t = _table(base, count)
    for _ in range(8):
        addr = data.draw(address(base, count))
        assert t.find(addr) == old_find(base, t.end, addr), hex(addr)


@FIXED
@given(data=st.data(), base=bases, count=counts)
def test_find_lock_refuses_exactly_what_find_refuses(data: Any, base: int, count: int) -> None:
    """find_lock's written-out test: None, taking nothing, exactly when the old find said -1 (a
    table with no lock words: an accepted address would fail on the missing _cas)."""
    t = _table(base, count)
    for _ in range(8):
        addr = data.draw(address(base, count))
        if old_find(base, t.end, addr) < 0:
            assert GranuleTable.find_lock(t, addr, 0) is None, hex(addr)
        else:
            try:
                GranuleTable.find_lock(t, addr, 0)
            except AttributeError:
                pass        # it went on to take the lock
            else:
                raise AssertionError(f"find_lock refused {addr:#x}")


@FIXED
@given(data=st.data(), base=bases, count=counts)
def test_lock_two_matches_the_pa_based_lock_two(data: Any, base: int, count: int) -> None:
    """The same refusals, and the same find_lock calls in the same (ascending PA) order."""
    for _ in range(8):
        t = _table(base, count)
        a = data.draw(address(base, count))
        b = data.draw(st.one_of(address(base, count), st.just(a)))
        expected = old_lock_two(base, t.end, a, b)
        got = t.lock_two(a, 0, b, 1)
        assert (got is None) == (expected is None), (hex(a), hex(b))
        assert t.calls == (expected or []), (hex(a), hex(b))


def prev_lock_two(base: int, count: int, addr_a: int, addr_b: int) -> "list[int] | None":
    """lock_two's offset tests before they were or'ed together and compared with the span (the
    oracle of that change): each offset's alignment, then its granule index against count."""
    if addr_a == addr_b:
        return None
    pos_a, pos_b = addr_a - base, addr_b - base
    if (pos_a & 0xFFF or not 0 <= pos_a >> 12 < count
            or pos_b & 0xFFF or not 0 <= pos_b >> 12 < count):
        return None
    return [addr_a, addr_b] if pos_a < pos_b else [addr_b, addr_a]


def _edges(base: int, count: int) -> list[int]:
    """Both ends of DRAM and each side of them, by a granule, a byte and half a granule; the
    middle; negative and huge addresses (offsets below the base included)."""
    end = base + count * GRANULE_SIZE
    near = [a + d for a in (base, end - GRANULE_SIZE, end, base + (count // 2) * GRANULE_SIZE)
            for d in (-GRANULE_SIZE, -0x800, -1, 0, 1, 0x800, GRANULE_SIZE)]
    far = [0, -1, -GRANULE_SIZE, -(1 << 64), (1 << 64) - GRANULE_SIZE, 1 << 64, (1 << 64) + 1, 1 << 200,
           -(1 << 200), base - (1 << 64), end + (1 << 64)]
    return sorted(set(near + far))


@pytest.mark.parametrize("base,count", [(0, 1), (0, 2), (0x8000_0000, 1), (0x8000_0000, 0x4000),
                                        (0x3FFF_F000, 3), ((1 << 48) - (1 << 20), 256), (1 << 64, 5)])
def test_lock_two_refuses_every_edge_pair_as_before(base: int, count: int) -> None:
    """Every ordered pair of edge addresses: the same find_lock calls, in the same order, as the
    two earlier versions (per-offset index tests, and PA tests), or the same refusal."""
    edges = _edges(base, count)
    for a in edges:
        for b in edges:
            t = _table(base, count)
            got = t.lock_two(a, 0, b, 1)
            want = prev_lock_two(base, count, a, b)
            assert want == old_lock_two(base, t.end, a, b), (hex(a), hex(b))
            assert (got is None) == (want is None) and t.calls == (want or []), (hex(a), hex(b))


@FIXED
@given(data=st.data(), base=bases, count=counts)
def test_lock_two_matches_its_per_offset_version(data: Any, base: int, count: int) -> None:
    for _ in range(8):
        t = _table(base, count)
        a = data.draw(address(base, count))
        b = data.draw(st.one_of(address(base, count), st.just(a), st.just(a ^ 0x800), st.just(a + GRANULE_SIZE)))
        want = prev_lock_two(base, count, a, b)
        got = t.lock_two(a, 0, b, 1)
        assert (got is None) == (want is None) and t.calls == (want or []), (hex(a), hex(b))
