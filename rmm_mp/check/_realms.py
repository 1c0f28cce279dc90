"""Invariants over realm structures: what every RD, RTT, DATA, REC and REC_AUX granule must agree on.

Rules (each violation names its rule), in the order the scan reaches them: each realm's
tables walked, then the RECs, then every RTT, DATA and REC_AUX granule's reference, the VMIDs:
  rtt-tree        an RD's IPA width (32..48 bits), start level (0..3) and root RTT count
                  (1..16) are in range, else its tables are not walked; every RTT granule
                  belongs to exactly one realm's tree (a root, or named by exactly one TABLE
                  entry), and every TABLE entry names an RTT granule
  rtt-entry       every entry's state fits where it is (DEN0137 A5.5.2): UNASSIGNED or ASSIGNED
                  at a Protected IPA, UNASSIGNED_NS or ASSIGNED_NS at an Unprotected one (TABLE
                  at either), and no ASSIGNED or ASSIGNED_NS entry in a level-0 RTT
  rtt-encoding    every entry is one RMM writes, bit for bit (s2tt.canonical): an entry that decodes
                  as some state but differs from that state's encoding is memory corruption or an
                  RMM bug (decode would read, say, a descriptor of type 0b10 as ASSIGNED RAM);
                  one violation per table, naming its first such entry and their count
  rtt-refcount    an RTT's refcount equals its live entries (TABLE and protected ASSIGNED)
  data-mapping    every protected ASSIGNED entry names DATA granules (a block: all of them),
                  each DATA granule is named by exactly one entry
  rec-owner       every REC's owner is an RD; every REC_AUX granule is listed by exactly one REC
  rec-index       the RECs of a realm have distinct indices, each below the realm's rec_index
                  (REC_CREATE gives a REC the rec_index and increments it: B4.3.12)
  rec-aux         an RD's aux granule count is RMI_REC_AUX_COUNT's answer (NUM_REC_AUX, set by
                  REALM_CREATE and never changed), and each REC lists that many aux granules
                  (B4.3.12 REC_CREATE: num_aux must equal RecAuxCount(rd), and the REC keeps
                  params.aux, RecAuxCount(rd) of them, each REC_AUX: the rec-owner rule above)
  rec-running     no REC holds the running reference on a quiescent machine
  rd-refcount     an RD's refcount equals the number of RECs whose owner it is
  vmid            each realm's VMID is one of the platform's and reserved, no two realms share
                  one (reported at the first RD, naming every RD), no VMID is reserved without a
                  realm (reported at no granule: PA None)

The tables are read from the machine's memory without locks: run this on a quiescent machine.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from rmm_mp.abi.structs import RmiRipas
from rmm_mp.hw.control import OFF_VMID_BITMAP, VMID_BITMAP_BYTES
from rmm_mp.hw.granule import GRANULE_SIZE
from rmm_mp.rmm import s2tt, vmid
from rmm_mp.rmm.granule_state import GranuleState as GS
from rmm_mp.rmm.realm_desc import NUM_REC_AUX, Rd
from rmm_mp.rmm.rec_desc import AUX_MAX, OFF_NUM_AUX, Rec
from rmm_mp.rmm.s2tt import Kind
from rmm_mp.words import count

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

Report = Callable[[str, "int | None", str], None]
"""(rule, the granule's PA or None when the violation is no granule's, detail)."""

_MAX_ROOTS = 16
"""Concatenated root RTTs a realm may have (RMI_REALM_CREATE rtt_num_start)."""


@dataclass
class _Scan:
    """What the walk of every realm found, to be compared with the granule table."""

    machine: "Machine"
    states: list[int]
    refcounts: list[int]
    report: Report
    rtt_owners: Counter[int] = field(default_factory=Counter)
    data_refs: Counter[int] = field(default_factory=Counter)
    aux_refs: Counter[int] = field(default_factory=Counter)
    aux_listers: dict[int, list[int]] = field(default_factory=dict)
    """Each aux granule's index -> the RECs (granule indices) listing it, to name them."""

    def pa(self, idx: int) -> int:
        return self.machine.dram_base + idx * GRANULE_SIZE

    def idx(self, pa: int) -> int:
        offset = pa - self.machine.dram_base
        return offset // GRANULE_SIZE if 0 <= offset < self.machine.granule_count * GRANULE_SIZE else -1


def check_realms(machine: "Machine", states: list[int], refcounts: list[int], report: Report) -> None:
    """Walk every realm and cross-check it with the granule states and refcounts."""
    scan = _Scan(machine, states, refcounts, report)
    rds = [i for i, s in enumerate(states) if s == GS.RD]
    for rd_idx in rds:
        try:
            _check_realm(scan, rd_idx)
        except Exception as exc:    # a structure too broken to walk is a finding, not a crash
            # The checker never raises (invariants' promise): RD fields or entries so corrupt
            # that walking them fails are reported with the RD, and the other realms still checked.
            scan.report("rtt-tree", scan.pa(rd_idx), f"the realm's tables cannot be walked: "
                                                     f"{type(exc).__name__}: {exc}")
    _check_recs(scan, set(rds))
    _check_references(scan)
    _check_vmids(scan, rds)


def _check_realm(scan: _Scan, rd_idx: int) -> None:
    params = Rd(scan.machine.memory, rd_idx).params()
    # The IPA width bounds the walk's arithmetic too: a corrupt one of 2^31 bits made it compute
    # with integers of that many bits at every entry, for minutes (and 0 made it raise).
    if not s2tt.MIN_IPA_BITS <= params.ipa_width <= s2tt.MAX_IPA_BITS \
            or not 0 <= params.rtt_level_start <= s2tt.PAGE_LEVEL or not 1 <= params.rtt_num_start <= _MAX_ROOTS:
        scan.report("rtt-tree", scan.pa(rd_idx), f"RD holds IPA width {params.ipa_width}, start level "
                                                 f"{params.rtt_level_start} and {params.rtt_num_start} root RTTs; "
                                                 f"expected {s2tt.MIN_IPA_BITS}..{s2tt.MAX_IPA_BITS}, 0..3 and "
                                                 f"1..{_MAX_ROOTS}")
        return
    ctx = params.s2ctx()
    first = scan.idx(params.rtt_base)
    if first < 0 or first + params.rtt_num_start > len(scan.states):
        scan.report("rtt-tree", scan.pa(rd_idx), f"root RTTs at {params.rtt_base:#x} are not DRAM")
        return
    for n in range(params.rtt_num_start):
        root = first + n
        scan.rtt_owners[root] += 1
        if scan.states[root] != GS.RTT:
            scan.report("rtt-tree", scan.pa(root), f"root RTT {n} of RD {scan.pa(rd_idx):#x} is "
                                                   f"{GS.name(scan.states[root])}")
            continue
        _check_table(scan, root, ctx.start_level, n * s2tt.ENTRIES * s2tt.block_size(ctx.start_level), ctx)


_PROTECTED_KINDS = frozenset({Kind.UNASSIGNED, Kind.ASSIGNED})
"""Entry states of a Protected IPA; UNASSIGNED_NS and ASSIGNED_NS are those of an Unprotected one."""


def _check_table(scan: _Scan, idx: int, level: int, first_ipa: int, ctx: s2tt.S2Ctx) -> None:
    """Check one table and recurse into its children."""
    entries = s2tt.entries(scan.machine.memory, idx)
    size = s2tt.block_size(level)
    live = 0
    misplaced: list[str] = []
    unwritten: list[str] = []
    for i, desc in enumerate(entries):
        ipa = first_ipa + i * size
        if ipa >= ctx.ipa_size:
            # Only a root has entries past the IPA space: REALM_CREATE leaves them 0 and no
            # command reaches them (every IPA argument is checked against the space first).
            stray = [(j, d) for j, d in enumerate(entries[i:], start=i) if d]
            if stray:
                j, d = stray[0]
                scan.report("rtt-tree", scan.pa(idx), f"entry {j} lies past the IPA space but holds {d:#x} "
                                                      f"({len(stray)} such entries); expected 0")
            break
        kind, ripas = s2tt.decode(desc, level)
        if problem := _misplaced(kind, level, ipa, ctx):
            misplaced.append(problem)
        if desc not in _PLAIN and (problem := _unwritten(desc, level, kind, ripas)):
            unwritten.append(f"entry {i} of a level-{level} RTT (IPA {ipa:#x}) holds {desc:#x}, {problem}")
        if kind == Kind.TABLE:
            live += 1
            child = scan.idx(s2tt.output_address(desc, level))
            scan.rtt_owners[child] += 1
            if child < 0 or scan.states[child] != GS.RTT:
                scan.report("rtt-tree", scan.pa(idx),
                            f"entry for IPA {ipa:#x} names {desc & s2tt.OA_MASK:#x}, not an RTT")
            elif scan.rtt_owners[child] == 1:
                _check_table(scan, child, level + 1, ipa, ctx)
        elif kind == Kind.ASSIGNED:
            live += 1
            _count_data(scan, idx, desc, level, ipa)
    # One report per table and rule: an unfolded block of the wrong kind, or a table overwritten
    # whole, would be 512 of them, and a stress run keeps only a check's first 8 violations.
    for rule, problems in (("rtt-entry", misplaced), ("rtt-encoding", unwritten)):
        if problems:
            scan.report(rule, scan.pa(idx), problems[0] + (f" ({len(problems)} such entries)"
                                                           if len(problems) > 1 else ""))
    if scan.refcounts[idx] != live:
        scan.report("rtt-refcount", scan.pa(idx), f"level {level} RTT has refcount {scan.refcounts[idx]} "
                                                  f"but {count(live, 'live entry', 'live entries')}")


_PLAIN = frozenset({s2tt.UNASSIGNED_EMPTY, s2tt.UNASSIGNED_RAM, s2tt.UNASSIGNED_DESTROYED, s2tt.UNASSIGNED_NS})
"""The entries most of a table holds, written as they are at every level: no need to re-encode them."""
_RIPAS_NAMES = {ripas.value: ripas.name for ripas in RmiRipas}
"""A RIPAS's name; RIPAS 3 (bits [6:5] both set) is none, and is named by its number."""


def _unwritten(desc: int, level: int, kind: Kind, ripas: int) -> str | None:
    """Why ``desc``, which decodes as (``kind``, ``ripas``) at ``level``, is no entry RMM writes
    (what was expected instead), or None when it is one (s2tt.canonical)."""
    if level < s2tt.MIN_BLOCK_LEVEL and kind in (Kind.ASSIGNED, Kind.ASSIGNED_NS):
        return None     # rtt-entry's: a level-0 RTT maps no blocks, whatever their encoding
    expected = s2tt.canonical(desc, level)
    if expected == desc:
        return None
    read = kind.name + (f" RIPAS {_RIPAS_NAMES.get(ripas, ripas)}" if kind in _PROTECTED_KINDS else "")
    if expected is not None:
        return f"an encoding RMM never writes: expected {expected:#x}, the {read} entry RMM writes"
    # Why canonical wrote none, each of its cases said by its own test (a case it gains later is
    # not taken for another's).
    if ripas > s2tt.RIPAS_DESTROYED:
        return f"an encoding RMM never writes: RIPAS {ripas} is none (EMPTY 0, RAM 1, DESTROYED 2 expected)"
    if kind == Kind.ASSIGNED_NS and desc & s2tt.MEMATTR_MASK == s2tt.MEMATTR_FWB_RESERVED:
        return (f"an encoding RMM never writes: it reads as {read} with the reserved MemAttr "
                f"{s2tt.MEMATTR_FWB_RESERVED >> 2:#05b}, which RMI_RTT_MAP_UNPROTECTED refuses")
    return f"an encoding RMM never writes: no {read} entry is written at level {level}"


def _misplaced(kind: Kind, level: int, ipa: int, ctx: s2tt.S2Ctx) -> str | None:
    """Why an entry of ``kind`` cannot be at ``ipa`` in a level-``level`` RTT, or None."""
    if kind == Kind.TABLE:
        return None
    if level < s2tt.MIN_BLOCK_LEVEL and kind in (Kind.ASSIGNED, Kind.ASSIGNED_NS):
        return f"entry for IPA {ipa:#x} is {kind.name} in a level-{level} RTT, which maps no blocks"
    if (kind in _PROTECTED_KINDS) != ctx.in_par(ipa):
        half = "a Protected" if ctx.in_par(ipa) else "an Unprotected"
        return f"entry for IPA {ipa:#x} is {kind.name}, but that is {half} IPA"
    return None


def _count_data(scan: _Scan, table: int, desc: int, level: int, ipa: int) -> None:
    base = scan.idx(s2tt.output_address(desc, level))
    granules = s2tt.block_size(level) // GRANULE_SIZE
    if base >= 0 and base + granules > len(scan.states):
        scan.report("data-mapping", scan.pa(table), f"IPA {ipa:#x} maps a level-{level} block from "
                                                    f"{scan.pa(base):#x} that runs past the end of DRAM")
        granules = len(scan.states) - base
    for idx in range(base, base + granules) if base >= 0 else ():
        scan.data_refs[idx] += 1
        if scan.states[idx] != GS.DATA:
            scan.report("data-mapping", scan.pa(table), f"IPA {ipa:#x} maps {scan.pa(idx):#x}, which is "
                                                        f"{GS.name(scan.states[idx])}, not DATA")
    if base < 0:
        scan.report("data-mapping", scan.pa(table), f"IPA {ipa:#x} maps {desc & s2tt.OA_MASK:#x}, not DRAM")


def _check_recs(scan: _Scan, rds: set[int]) -> None:
    owners: Counter[int] = Counter()
    indices: dict[tuple[int, int], int] = {}     # (RD, REC index) -> the first REC found with it
    for idx, state in enumerate(scan.states):
        if state != GS.REC:
            continue
        rec = Rec(scan.machine.memory, idx)
        owner = scan.idx(rec.owner_rd)
        owners[owner] += 1
        if owner not in rds:
            scan.report("rec-owner", scan.pa(idx), f"REC's owner {rec.owner_rd:#x} is not an RD")
        else:
            _check_rec_index(scan, idx, owner, rec.rec_idx, indices)
            _check_num_aux(scan, rec, idx, owner)
        if scan.refcounts[idx]:
            scan.report("rec-running", scan.pa(idx), "REC still holds the running reference")
        for n, aux in enumerate(rec.aux()):
            if scan.idx(aux) < 0:
                scan.report("rec-owner", scan.pa(idx), f"REC's aux granule {n} is {aux:#x}, not DRAM")
            scan.aux_refs[scan.idx(aux)] += 1
            scan.aux_listers.setdefault(scan.idx(aux), []).append(idx)
    for rd in rds:
        if scan.refcounts[rd] != owners[rd]:
            scan.report("rd-refcount", scan.pa(rd), f"RD refcount {scan.refcounts[rd]} but {count(owners[rd], 'REC')}")
        if (expected := Rd(scan.machine.memory, rd).num_rec_aux) != NUM_REC_AUX:
            scan.report("rec-aux", scan.pa(rd), f"RD's aux granule count is {expected}: expected {NUM_REC_AUX}, "
                                                "RMI_REC_AUX_COUNT's answer, which REALM_CREATE stores")


def _check_num_aux(scan: _Scan, desc: Rec, rec: int, rd: int) -> None:
    """A REC's aux granule count against its realm's: REC_CREATE refuses a num_aux other than
    RecAuxCount(rd) and nothing changes either later. The count is read raw: Rec.aux() keeps at
    most AUX_MAX entries, so a count past them was read as AUX_MAX and went unseen."""
    num_aux = struct.unpack_from("<Q", scan.machine.memory.buf, desc.offset + OFF_NUM_AUX)[0]
    expected = Rd(scan.machine.memory, rd).num_rec_aux
    if num_aux != expected:
        past = f" (at most {AUX_MAX} fit in a REC)" if num_aux > AUX_MAX else ""
        scan.report("rec-aux", scan.pa(rec), f"REC lists {count(num_aux, 'aux granule')}{past} but its RD "
                                             f"{scan.pa(rd):#x} says {expected}: expected as many")


def _check_rec_index(scan: _Scan, rec: int, rd: int, index: int, indices: dict[tuple[int, int], int]) -> None:
    """A REC's index against its realm's: REC_CREATE succeeds only for the RD's rec_index, which
    it then increments and nothing decrements, so indices are unique and below it. The RD
    refcount rule cannot see a lost update of rec_index (two REC_CREATEs reading it without the
    RD lock): both RECs are counted, with one index."""
    after = Rd(scan.machine.memory, rd).rec_count
    if index >= after:
        scan.report("rec-index", scan.pa(rec), f"REC index {index} of RD {scan.pa(rd):#x}, whose next REC index "
                                               f"is {after}: expected below it")
    first = indices.setdefault((rd, index), rec)
    if first != rec:
        scan.report("rec-index", scan.pa(rec), f"REC index {index} of RD {scan.pa(rd):#x} is REC "
                                               f"{scan.pa(first):#x}'s too: expected one REC per index")


def _check_references(scan: _Scan) -> None:
    """Every internal granule is referenced exactly once, and only internal granules are."""
    expected = {GS.RTT: scan.rtt_owners, GS.DATA: scan.data_refs, GS.REC_AUX: scan.aux_refs}
    rules = {GS.RTT: "rtt-tree", GS.DATA: "data-mapping", GS.REC_AUX: "rec-owner"}
    for idx, state in enumerate(scan.states):
        refs = expected.get(state)
        if refs is not None and refs[idx] != 1:
            scan.report(rules[state], scan.pa(idx), f"{GS.name(state)} granule is referenced {refs[idx]} times"
                                                    f"{_listed_by(scan, idx, state)}, expected once")
    for state, refs in expected.items():
        for idx, n in refs.items():
            if n and 0 <= idx < len(scan.states) and scan.states[idx] != state and state != GS.DATA:
                scan.report(rules[state], scan.pa(idx), f"referenced as {GS.name(state)}"
                                                        f"{_listed_by(scan, idx, state)} but is "
                                                        f"{GS.name(scan.states[idx])}")


def _listed_by(scan: _Scan, idx: int, state: int) -> str:
    """" (listed by REC 0x...)" for an aux granule that RECs list: the RECs a reader must look
    at (the count alone left them to be searched for); "" for any other."""
    recs = scan.aux_listers.get(idx, []) if state == GS.REC_AUX else []
    if not recs:
        return ""
    # Each REC once, with how often it lists the granule: a REC whose aux list names it twice
    # (corrupted memory) read "listed by RECs 0xA, 0xA", two RECs where there is one.
    times = Counter(recs)
    if len(times) == 1:
        return f" (listed by REC {scan.pa(recs[0]):#x}{_times(times[recs[0]])})"
    named = ", ".join(f"{scan.pa(r):#x}" + (f" ({_times(n).lstrip()})" if n > 1 else "") for r, n in times.items())
    return f" (listed by RECs {named})"


def _times(n: int) -> str:
    """" twice", " 3 times" ...; "" for once."""
    return "" if n == 1 else " twice" if n == 2 else f" {n} times"


def _check_vmids(scan: _Scan, rds: list[int]) -> None:
    seen: dict[int, list[int]] = {}     # VMID -> the RDs using it, in address order
    control = scan.machine.control
    bits = scan.machine.platform.features.vmid_bits
    for rd in rds:
        v = Rd(scan.machine.memory, rd).params().vmid
        seen.setdefault(v, []).append(rd)
        if not 0 <= v < 1 << bits:
            # REALM_CREATE reserves no VMID out of range; and the bitmap has no bit for it (read
            # at its place, it was other bytes of the control block, or past it: IndexError).
            scan.report("vmid", scan.pa(rd), f"realm's VMID {v} is not one of the platform's "
                                             f"{1 << bits:,} (vmid_bits {bits})")
        elif not vmid.in_use(control, v):
            scan.report("vmid", scan.pa(rd), f"realm's VMID {v} is not reserved")
    for v, users in seen.items():
        if len(users) > 1:
            # At the first RD, naming them all: the realms are what a reader must look at.
            scan.report("vmid", scan.pa(users[0]), f"VMID {v} is used by {len(users)} realms, the RDs "
                                                   f"{', '.join(f'{scan.pa(rd):#x}' for rd in users)}")
    bitmap = int.from_bytes(control.buf[OFF_VMID_BITMAP:OFF_VMID_BITMAP + VMID_BITMAP_BYTES], "little")
    v = 0
    while bitmap:
        if bitmap & 1 and v not in seen:
            # No granule: the bit is the control block's (the detail names the VMID).
            scan.report("vmid", None, f"VMID {v} is reserved but no realm uses it")
        bitmap >>= 1
        v += 1
