"""The memory check's count of a bundled guest's protected pages (programs.backed_pages: the
image's granules and guest_pages' span) holds for every constant and REC count the workload
file may give it: run, the guest never has more pages backed, and touches none outside them.

Each example is a one-realm workload (spec.load + resolve: the constants go through the file's
own checks; one they refuse is no example) whose realm CPU 0 builds and runs in this process,
one REC_ENTER at a time, until its vCPUs are done (or a number of steps for ripas-loop, which
never ends), with every SMC followed: DATA_CREATE and DATA_CREATE_UNKNOWN add a page to the
realm's backed set, DATA_DESTROY (a RIPAS change to EMPTY) removes one. The host's allocator is
followed too: with one realm it holds the realm's granules, which must stay within
resolve.realm_granules. RTT_MAP_UNPROTECTED is counted: a guest must have no more shared pages
mapped than the count gives it (programs.shared_pages: none for PROTECTED_ONLY).

Found by these tests: ripas-flip with RANGE_PAGES 0 (its touch loop counts down from 0, wraps and
faults in every page to the end of its RAM: 1,795 pages of 8 MiB against a count of 3), and
ripas-loop or smp-boot with MAX_RECS 0 (no RsiHostCall left in the image: REC 0's host calls
land in the page after it, which neither the image nor guest_pages counts; ripas-loop then had
6 pages backed against a count of 5).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, reject, settings
from hypothesis import strategies as st

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.cpu_handle import Cpu
from rmm_mp.guest.equ import with_constants
from rmm_mp.host.nsalloc import NsAllocator
from rmm_mp.hw.quiesce import Participant
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.workload import cpustate, programs, run, spec
from rmm_mp.workload.resolve import realm_granules, resolve

# Fixed inputs (tests/README.md): hypothesis runs derandomized and without an example database.
FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=30)

CREATE = (int(RmiFid.RMI_DATA_CREATE), int(RmiFid.RMI_DATA_CREATE_UNKNOWN))
DESTROY = int(RmiFid.RMI_DATA_DESTROY)
MAP_UNPROTECTED = int(RmiFid.RMI_RTT_MAP_UNPROTECTED)
RAM = 8 << 20
PAGE = 4096
BASE = programs.RAM_BASE


@dataclass
class Observed:
    backed: int
    """RealmTemplate.backed: what the memory check counts for the guest's pages."""
    allowed: set[int]
    """Page indices (from the RAM base) of the image and of guest_pages' span."""
    touched: set[int]
    """Every page index the host ever backed for the realm."""
    peak: int
    """The most pages backed for it at once."""
    held: int
    """The most granules the host's allocator held at once (the realm's, and a page the host
    holds for a moment while it builds it or backs a fault)."""
    bound: int
    """resolve.realm_granules of the realm."""
    image: int
    """Granules of the image."""
    creates: int
    """DATA_CREATE and DATA_CREATE_UNKNOWN calls that succeeded (a page given back and faulted
    in again counts each time)."""
    destroys: int
    """DATA_DESTROY calls that succeeded (the host's answer to a RIPAS change to EMPTY)."""
    shared_maps: int
    """RTT_MAP_UNPROTECTED calls that succeeded (a shared page the host backed for the guest)."""
    shared: int
    """RealmTemplate.shared: what the memory check counts for the guest's shared pages."""


def observe(guest: str, recs: int, constants: dict[str, int], extra: str = "", steps: int = 3000) -> Observed | None:
    """Build the realm and run it as described above; None if the workload file is refused."""
    consts = ", ".join(f"{name} = {value}" for name, value in constants.items())
    text = (f'cpus = 1\niterations = 1\nactivities = {{ run = 1 }}\n\n[[realm]]\nname = "vm"\nguest = "{guest}"\n'
            f'recs = {recs}\nram = "{RAM >> 20}M"\nconstants = {{ {consts} }}\n{extra}')
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.toml"
        path.write_text(text)
        try:
            w = resolve(spec.load(str(path)))
        except ConfigError:
            return None
    t = w.realms[0]
    source = programs.guest_text(guest)
    span = programs.guest_pages(guest, recs, with_constants(source, dict(t.constants)))
    allowed = set(range(-(-len(t.image) // PAGE)))
    if span is not None:
        allowed.update(range(span[0] // PAGE, -(-span[1] // PAGE)))
    live: set[int] = set()
    touched: set[int] = set()
    peak, held, calls = [0], [0], [0, 0, 0]
    real_smc, real_alloc = Cpu.smc, NsAllocator.alloc

    def smc(self: Cpu, fid: int, *args: int) -> tuple[int, int, int, int, int]:
        out = real_smc(self, fid, *args)
        if out[0] == 0 and fid in CREATE:
            page = (args[2] - BASE) // PAGE
            live.add(page)
            touched.add(page)
            calls[0] += 1
            peak[0] = max(peak[0], len(live))
        elif out[0] == 0 and fid == DESTROY:
            live.discard((args[1] - BASE) // PAGE)
            calls[1] += 1
        elif out[0] == 0 and fid == MAP_UNPROTECTED:
            calls[2] += 1
        return out

    def alloc(self: NsAllocator, count: int = 1, align: int = 1) -> int:
        pa = real_alloc(self, count, align)
        held[0] = max(held[0], self.in_use)
        return pa

    Cpu.smc, NsAllocator.alloc = smc, alloc  # type: ignore[method-assign]
    try:
        with Machine.create(w.platform, 1, time_slice=w.time_slice) as m:
            with Participant(m.control) as part:
                plan, parts, _ = run._prepare(m, w, run.RunOptions(progress=False), part)
            cpu = m.cpu(0)
            try:
                host = cpustate.Host(cpu, plan.job(0, parts[0]))
                for _ in range(steps):
                    if not host.run_one():
                        break
            finally:
                cpu.close()
    finally:
        Cpu.smc, NsAllocator.alloc = real_smc, real_alloc  # type: ignore[method-assign]
    return Observed(t.backed, allowed, touched, peak[0], held[0], realm_granules(t), -(-len(t.image) // PAGE),
                    *calls, t.shared or 0)


def place(first: int = 8) -> st.SearchStrategy[int]:
    """An IPA for a guest's pages: a page from ``first`` into RAM to 6 MiB, at its start or 8
    bytes into it (every access stays aligned; an unaligned base only makes the guest's RIPAS
    change fail, which it REPORTs)."""
    return st.builds(lambda page, sub: BASE + page * PAGE + sub, st.integers(first, 1536), st.sampled_from([0, 8]))


RECS = st.one_of(st.integers(1, 4), st.just(32), st.integers(1, 32))
SHA = st.sampled_from(["", 'hash = "sha512"\n'])
CASES = st.one_of(
    st.tuples(st.just("hello"), RECS, st.just({}), SHA),
    st.tuples(st.just("measure"), RECS, st.fixed_dictionaries({"SIZE": st.integers(0, 64),
                                                             "REM_INDEX": st.integers(1, 4)}), SHA),
    st.tuples(st.just("attest"), RECS, st.fixed_dictionaries({
        "BUFFER_OFFSET": st.integers(3, 1536).map(lambda p: p * PAGE), "OFFSET": st.integers(0, 8191),
        "SHARED_OFFSET": st.integers(0, RAM - 2 * PAGE), "CHUNK": st.integers(1, 5000),
        "EXTEND_REM": st.integers(0, 4), "EXTEND_SIZE": st.integers(0, 64)}), SHA),
    st.tuples(st.just("smp-boot"), RECS, st.fixed_dictionaries({
        "PAGES": place(), "MAX_RECS": st.integers(0, 40), "WORK": st.integers(0, 3)}), st.just("")),
    st.tuples(st.just("ripas-flip"), RECS, st.fixed_dictionaries({
        "RANGE": place(), "RANGE_PAGES": st.integers(0, 64)}), st.just("")),
    st.tuples(st.just("ripas-loop"), RECS, st.fixed_dictionaries({
        "RANGE": place(), "PAGES": st.integers(0, 8), "MAX_RECS": st.integers(0, 40), "WORK": st.integers(0, 2)}),
        st.just("")),
)


@FIXED
@given(CASES)
@example(("ripas-flip", 1, {"RANGE_PAGES": 0}, ""))            # the touch loop wraps: all RAM after RANGE
@example(("ripas-loop", 1, {"MAX_RECS": 0}, ""))               # REC 0's RsiHostCall after the image
@example(("smp-boot", 4, {"MAX_RECS": 0}, ""))
@example(("smp-boot", 32, {}, ""))                             # every secondary's page
@example(("ripas-loop", 32, {}, ""))                           # 32 RECs giving their pages back
@example(("ripas-loop", 3, {"RANGE": BASE + 3 * PAGE, "PAGES": 8}, ""))   # pages right after the image
@example(("ripas-flip", 1, {"RANGE": BASE + 3 * PAGE, "RANGE_PAGES": 64}, ""))
@example(("attest", 1, {"OFFSET": 4095, "BUFFER_OFFSET": 2 * PAGE}, 'hash = "sha512"\n'))
def test_a_bundled_guest_has_no_more_pages_backed_than_the_check_counts(case: tuple[str, int, dict[str, int], str]
                                                                       ) -> None:
    """A bundled guest (hello, measure, attest, smp-boot, ripas-flip, ripas-loop) with constants
    and a REC count drawn from what a workload file may give it, run in a realm built on the host
    platform until it is done (ripas-loop: until its RECs have given their pages back and taken
    them again): every page the host backs for it is in its image or in guest_pages' span, no
    more than RealmTemplate.backed are backed at once, no shared page is mapped for a guest in
    programs.PROTECTED_ONLY, no more than RealmTemplate.shared for the others, and the host holds no more granules than realm_granules counts for
    the realm. ripas-flip and ripas-loop gave pages back (EMPTY,
    DATA_DESTROY) and had them faulted in again; each smp-boot secondary backed its page."""
    guest, recs, constants, extra = case
    steps = 300 + recs * (3 * constants.get("PAGES", 4) + 12) * 3 if guest == "ripas-loop" else 3000
    seen = observe(guest, recs, constants, extra, steps)
    if seen is None:
        reject()        # a file the checks refuse: nothing runs
    # What the check counts is the allowed set, so no interleaving of the RECs (on more CPUs,
    # other time slices) can have more of it backed at once than this run could.
    assert len(seen.allowed) == seen.backed
    assert seen.touched <= seen.allowed, sorted(seen.touched - seen.allowed)
    assert seen.peak <= seen.backed
    # hello, measure, smp-boot and ripas-loop count no shared pages (programs.PROTECTED_ONLY):
    # whatever constants they are given, the host must back none for them.
    if not programs.shares_pages(guest):
        assert seen.shared_maps == 0, seen.shared_maps
    # The shared pages it had backed are no more than the check counts (attest: its token's
    # copy at SHARED_OFFSET, 1 page or 2; ripas-flip: 1), each mapped once (the realm lives once).
    assert seen.shared_maps <= seen.shared, (seen.shared_maps, seen.shared)
    assert seen.held <= seen.bound
    # The run did what the guest is for, so the pages above were really asked for. (At an
    # unaligned RANGE the guest's RIPAS change fails: it REPORTs that instead.)
    if guest in ("ripas-flip", "ripas-loop") and constants.get("RANGE", 0) % PAGE == 0:
        assert seen.destroys > 0 and seen.creates > len(seen.touched)     # given back, faulted in again
    if guest == "smp-boot" and constants.get("PAGES", 0) % PAGE == 0:
        assert len(seen.touched) - seen.image == min(recs, constants.get("MAX_RECS", 32)) - 1   # each secondary's


@pytest.mark.parametrize("guest, recs, constant, why", [
    ("ripas-flip", 1, "RANGE_PAGES", "at least 1 page"),
    ("ripas-loop", 2, "MAX_RECS", "at least 1 REC"),
    ("smp-boot", 2, "MAX_RECS", "at least 1 REC"),
])
def test_constants_that_leave_the_counted_pages_are_refused(tmp_path: Path, guest: str, recs: int, constant: str,
                                                            why: str) -> None:
    """ripas-flip's RANGE_PAGES 0 (its touch loop wraps and faults in all of its RAM from RANGE)
    and MAX_RECS 0 of ripas-loop and smp-boot (no RsiHostCall in the image: REC 0's host calls
    land in the page after it) were accepted; they are refused naming the constant, and 1 is
    accepted."""
    text = (f'seconds = 1\nactivities = {{ run = 1 }}\n[[realm]]\nname = "a"\nguest = "{guest}"\nrecs = {recs}\n'
            f'ram = "2M"\nconstants = {{ {constant} = 0 }}\n')
    path = tmp_path / "w.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve(spec.load(str(path)))
    err = info.value
    assert (err.line, err.key, err.value) == (8, f"realm[0].constants.{constant}", 0), str(err)
    assert why in err.expected, str(err)
    path.write_text(text.replace(f"{constant} = 0", f"{constant} = 1"))
    assert resolve(spec.load(str(path))).realms[0].constants == ((constant, 1),)
