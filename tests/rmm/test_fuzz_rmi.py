"""Fuzzing every RMI 1.0 command with a bad-address vocabulary (issue 3, "The RMI surface").

A Python exception inside a handler is an RMM bug and surfaces as RmmInternalError. Hypothesis
draws sequences of RMI calls; each sequence runs on a fresh ``host`` machine (one CPU) holding a
small realm population (``build``: realm A NEW with s2sz 40, realm B ACTIVE with s2sz 33 and 8
concatenated level-2 roots, RTTs down to level 3, measured and unknown DATA, DESTROYED entries,
an ASSIGNED level-2 block made by a fold, ASSIGNED_NS mappings, foldable tables, RECs with their
aux granules, DELEGATED granules, NS pages with valid and broken RmiRealmParams, RmiRecParams and
RmiRecRun images and a page of garbage). Every argument comes from a vocabulary (``ARGS``):
population granules of each state, aligned or + 1, + 0x800, + 0xFFF; MMIO, Secure, the PA past
DRAM, 1 << pa_bits, 0, 0xFFFF_FFFF_FFFF_F000 and random values; named IPAs of either realm
(protected, unprotected, top, 1 << s2sz, huge) with offsets; levels -1..4 and random; flags and
statuses 0, 1, 2, PSCI codes -1..-9 and random. Mostly (three in four) an argument is one that
gets the command past its early checks, so that sequences also reach the deep paths and change
state that later calls then meet.

Checked after EVERY call of a sequence (``Runner.call``):
1. ``cpu.smc`` does not raise (no RmmInternalError), returns 5 ints in [0, 2^64), the machine
   is not dead, and no granule lock is held;
2. X0 is an RMI 1.0 return code: status 0..4, index 0 except (RMI_ERROR_RTT, level 0..3) and
   (RMI_ERROR_REALM, 0 or 1) from REC_ENTER; X1..X4 beyond the command's outputs read 0 (spec
   B1.2; the caller's X4 is junk that must not come back);
3. a call that does not return RMI_SUCCESS leaves the footprint unchanged: footprint.snapshot
   (every granule's state word and lock, the GPT, the contents of every population granule)
   and the VMID bitmap. No failing RMM 1.0 command may change state here: the one exception,
   REC_ENTER failing with ERROR_INPUT after the realm ran because the exit could not be
   written, needs the run page to change PAS during the call, which one CPU cannot do;
and at the end of the sequence 4. the invariant checker passes.

A failure is reported as the shortest sequence ``_minimise`` finds that fails the same way, as
``cpu.smc`` lines to replay on ``build(Machine.create("host", cpus=1))`` (also ``note``d).
Hypothesis's own shrinking is off: with a fresh machine per attempt it runs for minutes.

White-box (``_white_box``): B's RECs hold what realm exits would leave (pending PSCI requests,
RIPAS change requests, an emulatable data-abort syndrome), as tests/rmm/test_rmi_psci.py does.

Besides the fuzz tests: fixed scenarios with the X0 of every call (deep paths the random
sequences reach only now and then), and the "wrong object" cases: an RD where a REC is expected
and the reverse, REC_AUX, RTT and DATA granules as RD or REC, one granule in two roles, host
structure pointers at DELEGATED, Realm, Secure or MMIO granules.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterator, Union

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from footprint import Snapshot, snapshot
from rmi_helpers import GRANULE, INPUT, SUCCESS, Realm, Rmi
from rmm_mp import Machine
from rmm_mp.abi.rmi import RMI_ABI_VERSION, RmiFid, RmiStatus
from rmm_mp.abi.structs import RMI_REALM_PARAMS, RMI_REC_ENTER
from rmm_mp.abi.smccc import to_u64
from rmm_mp.check import invariants
from rmm_mp.hw.control import OFF_VMID_BITMAP, VMID_BITMAP_BYTES
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.dispatch import COMMANDS
from rmm_mp.rmm.rec_desc import Rec

F = RmiFid
U64 = (1 << 64) - 1
X4 = 0x4444_5555_6666_7777
PAD = [0x1111_DEAD_0000_0001, 0x2222_DEAD_0000_0002, 0x3333_DEAD_0000_0003, X4, 0x5555_DEAD_0000_0005,
       0x6666_DEAD_0000_0006]
"""X1..X6 beyond a command's inputs: junk the command must ignore (X4 must come back as 0)."""
L2 = s2tt.block_size(2)
NORMAL_RW = s2tt.MEMATTR_FWB_NORMAL_WB | 0xC0
"""Host attributes of an NS mapping: MemAttr Normal write-back, S2AP read/write."""
PSCI_CPU_ON, PSCI_AFFINITY_INFO = 0xC400_0003, 0xC400_0004
LR_PENDING = 1 << 62
ESR_EMULATABLE_ABORT = (0x24 << 26) | (1 << 24)
"""A data abort from the realm with ISV set: what an emulatable MMIO exit leaves in the REC."""
MEASURE_CONTENT = 1


# == the population ==============================================================================

@dataclass
class Population:
    """The machine's objects by role: ``roles[name]`` lists PAs (see ``build``)."""

    m: Machine
    t: Rmi
    realms: dict[str, Realm]
    roles: dict[str, list[int]] = field(default_factory=dict)

    def add(self, role: str, *pas: int) -> None:
        self.roles.setdefault(role, []).extend(pas)

    @property
    def footprint(self) -> tuple[int, ...]:
        """Every DRAM granule the population names: a failing call must leave their contents."""
        return tuple(sorted({pa for pas in self.roles.values() for pa in pas
                             if self.m.dram_base <= pa < self.dram_end}))

    @property
    def dram_end(self) -> int:
        return self.m.dram_base + self.m.granule_count * self.m.granule_size

    def name(self, pa: int) -> str:
        """The population's name for a register value ('rd[1]+0x800'), or its hex."""
        for role, pas in self.roles.items():
            for i, base in enumerate(pas):
                if base <= pa < base + GRANULE and role not in SPECIAL:
                    return f"{role}[{i}]+{pa - base:#x}"
        return f"{pa:#x}"


SPECIAL = ("mmio", "secure", "past_dram", "pa_limit", "zero", "top_page")


def _smc_ok(t: Rmi, fid: int, *args: int) -> tuple[int, ...]:
    regs = t.smc(fid, *args)
    assert regs[0] == SUCCESS, f"population: {F(fid).name}{tuple(hex(a) for a in args)} -> {regs[0]:#x}"
    return regs


def _first_table(pop: Population, realm: Realm) -> None:
    """The level-3 table at IPA 0 that realms A and B share the layout of: RIPAS RAM over
    0x2000..0x5000, a DATA granule at 0 (measured content), an unknown one at 0x1000, and
    0x4000 DESTROYED (its granule back to DELEGATED)."""
    t = pop.t
    t.rtts(realm, 0, 3)
    _smc_ok(t, F.RMI_RTT_INIT_RIPAS, realm.rd, 0x2000, 0x5000)
    data, unknown, gone = t.delegate(), t.delegate(), t.delegate()
    _smc_ok(t, F.RMI_DATA_CREATE, realm.rd, data, 0, pop.roles["src"][0], MEASURE_CONTENT)
    _smc_ok(t, F.RMI_DATA_CREATE_UNKNOWN, realm.rd, unknown, 0x1000)
    _smc_ok(t, F.RMI_DATA_CREATE_UNKNOWN, realm.rd, gone, 0x4000)
    _smc_ok(t, F.RMI_DATA_DESTROY, realm.rd, 0x4000)
    pop.add("data", data, unknown)
    pop.add("delegated", gone)


def _realm_a(pop: Population) -> None:
    """Realm A: NEW, s2sz 40, start level 1 (2 concatenated roots). At protected IPA 0 a level-3
    table with DATA (measured) at 0, DATA (unknown, RIPAS EMPTY) at 0x1000, RIPAS RAM at
    0x2000..0x4000, DESTROYED at 0x4000; an ASSIGNED level-2 block at 2 MiB (512 DATA granules,
    folded); at 4 MiB a level-3 table all UNASSIGNED RAM (foldable); an ASSIGNED_NS level-2
    block at the first unprotected IPA; REC A0."""
    t, a = pop.t, pop.realms["A"]
    _first_table(pop, a)
    t.rtts(a, L2, 3)
    first = t.ns_granules(s2tt.ENTRIES, align=L2)
    for i in range(s2tt.ENTRIES):
        _smc_ok(t, F.RMI_DATA_CREATE_UNKNOWN, a.rd, t.delegate(first + i * GRANULE), L2 + i * GRANULE)
    folded = _smc_ok(t, F.RMI_RTT_FOLD, a.rd, L2, 3)[1]
    del a.rtts[(L2, 3)]
    pop.add("block", first, first + 0x1000, first + (s2tt.ENTRIES - 1) * GRANULE)
    pop.add("delegated", folded)
    t.rtts(a, 2 * L2, 3)
    _smc_ok(t, F.RMI_RTT_INIT_RIPAS, a.rd, 2 * L2, 3 * L2)
    t.rtts(a, a.unprotected, 2)
    _smc_ok(t, F.RMI_RTT_MAP_UNPROTECTED, a.rd, a.unprotected, 2, pop.roles["ns_block"][0] | NORMAL_RW)
    pop.add("rec", t.rec(a))


def _realm_b(pop: Population) -> None:
    """Realm B: ACTIVE, s2sz 33, start level 2 (8 concatenated roots). A level-3 table at IPA 0
    laid out as A's; at 4 MiB a level-3 table all UNASSIGNED EMPTY (foldable); an ASSIGNED_NS
    page at the first unprotected IPA and, 2 MiB above, a level-3 table all UNASSIGNED_NS
    (foldable); RECs B0, B1, B3, B4 runnable, B2 not."""
    t, b = pop.t, pop.realms["B"]
    _first_table(pop, b)
    t.rtts(b, 2 * L2, 3)
    t.rtts(b, b.unprotected, 3)
    t.rtts(b, b.unprotected + L2, 3)
    _smc_ok(t, F.RMI_RTT_MAP_UNPROTECTED, b.rd, b.unprotected, 3, pop.roles["ns"][0] | NORMAL_RW)
    pop.add("rec", t.rec(b), t.rec(b), t.rec(b, runnable=False), t.rec(b), t.rec(b))
    _smc_ok(t, F.RMI_REALM_ACTIVATE, b.rd)


def _white_box(pop: Population) -> None:
    """White-box: what realm exits would leave in B's RECs (module docstring): B0 an emulatable
    data abort and a RIPAS change [0, 2 MiB) to EMPTY (DESTROYED stays); B1 a PSCI_CPU_ON for B2
    (off); B2 a RIPAS change [2 MiB + 4 KiB, 6 MiB) to RAM that may leave DESTROYED; B3 a
    PSCI_CPU_ON for B0 (already on) and a RIPAS change [2 MiB, 2 MiB + 12 KiB); B4 a
    PSCI_AFFINITY_INFO for B2."""
    m = pop.m
    b0, b1, b2, b3, b4 = (Rec(m.memory, (pa - m.dram_base) // GRANULE) for pa, _ in pop.realms["B"].recs)
    b0.set_ripas_request(0, L2, 0, s2tt.RIPAS_EMPTY, 0)
    b0.set_last_exit(ESR_EMULATABLE_ABORT, 0, 0)
    b2.set_ripas_request(L2 + GRANULE, 3 * L2, L2 + GRANULE, s2tt.RIPAS_RAM, 1)
    b3.set_ripas_request(L2, L2 + 3 * GRANULE, L2, s2tt.RIPAS_EMPTY, 0)
    for rec, fid, target in ((b1, PSCI_CPU_ON, 2), (b3, PSCI_CPU_ON, 0), (b4, PSCI_AFFINITY_INFO, 2)):
        rec.psci_pending = fid
        rec.set_gprs((fid, target, 0x8000_4000, 0xC0FF_EE00))


def _host_pages(pop: Population) -> None:
    """NS pages: ns, src, run (RmiRecRun images: [0] zeros, then EMUL_MMIO, INJECT_SEA, every
    flag, an unknown flag bit, an ICH_HCR bit the host may not set, an LR with HW set, two LRs
    with one vINTID), garbage, and ns_block (2 MiB aligned, never handed out)."""
    t = pop.t
    pop.add("ns", t.ns_page(b"plain host page"))
    pop.add("src", t.ns_page(bytes(range(256)) * 16))
    pending = (LR_PENDING | 32, LR_PENDING | 33)
    for fields in ({}, {"flags": 1}, {"flags": 2}, {"flags": 0x1F}, {"flags": 1 << 63}, {"gicv3_hcr": 1},
                   {"gicv3_lrs": (LR_PENDING | 1 << 61 | 32,)}, {"gicv3_lrs": (pending[0], pending[0])},
                   {"gicv3_hcr": 0x40FE, "gicv3_lrs": pending}):
        pop.add("run", t.ns_page(bytes(RMI_REC_ENTER.pack(**fields))))
    pop.add("garbage", t.ns_page(random.Random(3).randbytes(GRANULE)))
    pop.add("ns_block", pop.m.dram_base + 16 * L2)


def _spares(pop: Population) -> None:
    """What lets creation commands succeed: DELEGATED granules; RmiRealmParams images for a realm
    C ([0] valid: s2sz 36, one root c_root, its RD to be spare_rd; then one broken field each);
    RmiRecParams images for REC A1 ([0] valid: to be spare_rec with the 16 a1_aux; then one
    broken field each). c_root and a1_aux are DELEGATED granules listed under delegated too."""
    t, r = pop.t, pop.roles
    loose = [t.delegate() for _ in range(4)]
    aux = tuple(t.delegate() for _ in range(16))
    pop.add("delegated", loose[3], loose[0], *aux)
    pop.add("spare_rd", loose[1])
    pop.add("spare_rec", loose[2])
    pop.add("c_root", loose[0])
    pop.add("a1_aux", *aux)
    valid = dict(s2sz=36, num_bps=1, num_wps=1, vmid=9, rtt_base=loose[0], rtt_level_start=1, rtt_num_start=1)
    for broken in ({}, {"s2sz": 49}, {"num_bps": 0}, {"flags": 4, "pmu_num_ctrs": 0}, {"flags": 2}, {"flags": 1},
                   {"hash_algo": 2}, {"rtt_num_start": 2}, {"rtt_level_start": 3}, {"vmid": 300},
                   {"vmid": pop.realms["A"].vmid}, {"rtt_base": loose[0] + 0x800},
                   {"rtt_base": pop.realms["B"].roots[0]}, {"rtt_base": loose[1]}):
        pop.add("realm_params", t.ns_page(bytes(RMI_REALM_PARAMS.pack(**{**valid, **broken}))))
    ns_aux = aux[:5] + (r["ns"][0],) + aux[6:]
    for broken in ({}, {"runnable": False}, {"index": 0}, {"mpidr": 0x2}, {"num_aux": 17}, {"aux": aux[:15]},
                   {"aux": aux[:3] + (aux[3] + 0x800,) + aux[4:]}, {"aux": ns_aux}):
        fields: dict = {"index": 1, "pc": 0x1000, "aux": aux, **broken}
        pop.add("rec_params", t.rec_params(**fields))


def build(m: Machine) -> Population:
    """A small realm population on a fresh machine, every object named by role:

    rd (A NEW, B ACTIVE), rtt (roots and tables), rec (A0, B0..B4), rec_aux, data (measured and
    unknown, both realms), block (first, second and last DATA granule of A's folded level-2
    block), delegated, spare_rd, spare_rec; NS pages: ns, src, run, realm_params, rec_params,
    garbage, ns_block (see _host_pages and _spares); and the specials mmio, secure, past_dram,
    pa_limit (1 << pa_bits), zero, top_page.
    """
    t = Rmi(m)
    pop = Population(m, t, {})
    _host_pages(pop)
    pop.realms = {"A": t.realm(40, start_level=1), "B": t.realm(33, start_level=2)}
    _realm_a(pop)
    _realm_b(pop)
    _spares(pop)
    for r in pop.realms.values():
        pop.add("rd", r.rd)
        pop.add("rtt", *r.roots, *r.rtts.values())
        pop.add("rec_aux", *(aux for _, auxes in r.recs for aux in auxes))
    _white_box(pop)
    pop.add("mmio", m.mmio_regions[0][0])
    pop.add("secure", m.secure_regions[0][0])
    pop.add("past_dram", pop.dram_end)
    pop.add("pa_limit", 1 << m.pa_bits)
    pop.add("zero", 0)
    pop.add("top_page", 0xFFFF_FFFF_FFFF_F000)
    return pop


# == the vocabulary ==============================================================================

@dataclass(frozen=True)
class Pa:
    """A symbolic address: granule ``index`` (modulo the role's size) of ``role``, plus ``offset``."""

    role: str
    index: int = 0
    offset: int = 0

    def __repr__(self) -> str:
        return f"Pa({self.role!r}, {self.index}, {self.offset:#x})"


IPA_NAMES: dict[str, Callable[[int], int]] = {
    "data": lambda s2sz: 0,                  # A and B: ASSIGNED RAM (measured DATA)
    "unknown": lambda s2sz: 0x1000,          # ASSIGNED EMPTY (DATA_CREATE_UNKNOWN)
    "ram": lambda s2sz: 0x2000,              # UNASSIGNED RAM
    "destroyed": lambda s2sz: 0x4000,        # UNASSIGNED DESTROYED
    "empty": lambda s2sz: 0x5000,            # UNASSIGNED EMPTY in a level-3 table
    "block": lambda s2sz: L2,                # A: ASSIGNED level-2 block; B: no table there
    "fold": lambda s2sz: 2 * L2,             # a level-3 table with 512 like entries
    "l1": lambda s2sz: 1 << 30,              # no table below the start level
    "unprot": lambda s2sz: 1 << (s2sz - 1),  # ASSIGNED_NS (A level 2, B level 3)
    "top": lambda s2sz: (1 << s2sz) - GRANULE,
    "limit": lambda s2sz: 1 << s2sz,
    "huge": lambda s2sz: 1 << 63,
    "max": lambda s2sz: 0xFFFF_FFFF_FFFF_F000,
}


@dataclass(frozen=True)
class Ipa:
    """A symbolic IPA: ``IPA_NAMES[name]`` for realm ``realm``'s s2sz, plus ``offset``."""

    realm: str
    name: str
    offset: int = 0

    def __repr__(self) -> str:
        return f"Ipa({self.realm!r}, {self.name!r}, {self.offset:#x})"


@dataclass(frozen=True)
class Desc:
    """An RTT_MAP_UNPROTECTED descriptor: an address OR'd with attribute bits."""

    addr: "Arg"
    attrs: int

    def __repr__(self) -> str:
        return f"Desc({self.addr!r}, {self.attrs:#x})"


Arg = Union[int, Pa, Ipa, Desc]

ROLES = ("ns", "src", "run", "garbage", "realm_params", "rec_params", "ns_block", "delegated",
         "spare_rd", "spare_rec", "rd", "rec", "rec_aux", "rtt", "data", "block")
_u64 = st.integers(0, U64)
_offset = st.one_of(st.just(0), st.sampled_from([1, 0x800, 0xFFF]))


def _role(*roles: str, offset: st.SearchStrategy[int] = st.just(0)) -> st.SearchStrategy[Pa]:
    """A granule of one of ``roles`` (index taken modulo the role's size)."""
    return st.builds(Pa, st.sampled_from(roles), st.integers(0, 31), offset)


def _ipa(realms: str = "AB", names: tuple[str, ...] = tuple(IPA_NAMES),
         offsets: tuple[int, ...] = (0,)) -> st.SearchStrategy[Ipa]:
    return st.builds(Ipa, st.sampled_from(realms), st.sampled_from(names), st.sampled_from(offsets))


ADDR = st.one_of(_role(*ROLES, offset=_offset), st.builds(Pa, st.sampled_from(SPECIAL)), _u64)
"""Any address: a population granule (aligned or + 1, + 0x800, + 0xFFF), a special (MMIO,
Secure, past DRAM, 1 << pa_bits, 0, 0xFFFF_FFFF_FFFF_F000), or a random 64-bit value."""
IPA = st.one_of(_ipa(), _ipa(offsets=(1, 0x800, 0x1000, L2)), _u64)
"""Any IPA: named IPAs of either realm (protected, unprotected, top, 1 << s2sz, huge), aligned
or not, or a random 64-bit value."""
LEVEL = st.one_of(st.sampled_from([3, 2, 1, 0, 4, U64]), _u64)
WORD = st.one_of(st.sampled_from([0, 1, 2, *(to_u64(-k) for k in range(1, 10))]), _u64)
"""Flags, PSCI status and feature index arguments: 0, 1, 2, PSCI codes -1..-9, random."""
DESC = st.one_of(st.builds(Desc, ADDR, st.sampled_from([NORMAL_RW, 0, s2tt.NS_HOST_ATTRS, 0xD0, 0x3, 1 << 63])),
                 _u64)
"""RTT_MAP_UNPROTECTED descriptors: any address with valid, reserved or stray attribute bits."""


def _weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Draw from one of the strategies with the given weights.

    st.one_of cannot weight: it flattens nested one_of and merges repeated branches, even when
    each copy is wrapped in its own map (measured: 3:1 came out as 1:4). Hypothesis shrinks a
    flatmap poorly, which does not matter here: its shrinking is off (``FUZZ``).
    """
    flat = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(flat) - 1).flatmap(flat.__getitem__)


def _arg(good: st.SearchStrategy, bad: st.SearchStrategy = ADDR) -> st.SearchStrategy:
    """Three draws in four from ``good`` (what lets the command get past its early checks), one
    from the bad vocabulary ``bad``."""
    return _weighted((3, good), (1, bad))


def _first_or_any(role: str, *first: int) -> st.SearchStrategy[Pa]:
    """Half the time one of the ``first`` granules of ``role`` (the valid image, the REC with a
    pending request), else any granule of the role."""
    return st.one_of(st.sampled_from([Pa(role, i) for i in first]), _role(role))


_RD = _arg(st.one_of(_role("rd"), _role("rd", "spare_rd")))
_REC = _arg(_role("rec"))
_NEW_GRANULE = _arg(_role("delegated", "spare_rd", "spare_rec"))
_LEVEL = _arg(st.sampled_from([3, 2, 1]), LEVEL)
_PAGE_IPA = _arg(_ipa(names=("empty", "ram", "destroyed", "unknown", "data", "block", "fold")), IPA)
_TOP_IPA = _arg(_ipa(names=("block", "unknown", "ram", "empty", "data", "fold")), IPA)
_TABLE_IPA = _arg(_ipa(names=("l1", "fold", "unprot", "block", "data", "top"), offsets=(0, L2)), IPA)
_UNPROT_IPA = _arg(_ipa(names=("unprot",), offsets=(0, 0x1000, L2)), IPA)

ARGS: dict[RmiFid, tuple[st.SearchStrategy, ...]] = {
    F.RMI_VERSION: (_arg(st.just(RMI_ABI_VERSION),
                         st.one_of(st.sampled_from([0, 0x1_0001, 0x2_0000, 1 << 32 | RMI_ABI_VERSION]), _u64)),),
    F.RMI_FEATURES: (_arg(st.sampled_from([0, 1]), WORD),),
    F.RMI_GRANULE_DELEGATE: (_arg(_role("ns", "src", "run", "garbage", "realm_params", "rec_params")),),
    F.RMI_GRANULE_UNDELEGATE: (_NEW_GRANULE,),
    F.RMI_DATA_CREATE: (_RD, _NEW_GRANULE, _PAGE_IPA, _arg(_role("src")), _arg(st.sampled_from([0, 1]), WORD)),
    F.RMI_DATA_CREATE_UNKNOWN: (_RD, _NEW_GRANULE, _PAGE_IPA),
    F.RMI_DATA_DESTROY: (_RD, _arg(_ipa(names=("unknown", "data", "block", "ram", "empty")), IPA)),
    F.RMI_REALM_ACTIVATE: (_RD,),
    F.RMI_REALM_CREATE: (_arg(_role("spare_rd", "delegated")), _arg(_first_or_any("realm_params", 0))),
    F.RMI_REALM_DESTROY: (_arg(_role("spare_rd", "rd")),),
    F.RMI_REC_CREATE: (_RD, _arg(_role("spare_rec", "delegated")), _arg(_first_or_any("rec_params", 0))),
    F.RMI_REC_DESTROY: (_REC,),
    F.RMI_REC_ENTER: (_arg(_first_or_any("rec", 1)), _arg(_first_or_any("run", 0))),
    F.RMI_RTT_CREATE: (_RD, _NEW_GRANULE, _TABLE_IPA, _LEVEL),
    F.RMI_RTT_DESTROY: (_RD, _TABLE_IPA, _LEVEL),
    F.RMI_RTT_MAP_UNPROTECTED: (_RD, _UNPROT_IPA, _arg(st.sampled_from([3, 2]), LEVEL),
                                _arg(st.builds(Desc, _role("ns", "ns_block"), st.just(NORMAL_RW)), DESC)),
    F.RMI_RTT_READ_ENTRY: (_RD, _arg(_ipa(offsets=(0, L2)), IPA), _LEVEL),
    F.RMI_RTT_UNMAP_UNPROTECTED: (_RD, _UNPROT_IPA, _arg(st.sampled_from([3, 2]), LEVEL)),
    F.RMI_PSCI_COMPLETE: (_arg(_first_or_any("rec", 2, 4, 5)), _arg(_first_or_any("rec", 3, 1)),
                          _arg(st.sampled_from([0, to_u64(-3)]), WORD)),
    F.RMI_RTT_FOLD: (_RD, _arg(_ipa(names=("fold", "data", "block", "l1", "unprot"), offsets=(0, L2)), IPA),
                     _LEVEL),
    F.RMI_REC_AUX_COUNT: (_RD,),
    F.RMI_RTT_INIT_RIPAS: (_RD, _PAGE_IPA, _TOP_IPA),
    F.RMI_RTT_SET_RIPAS: (_arg(_first_or_any("rd", 1)), _arg(_first_or_any("rec", 1, 3, 4)),
                          _arg(_ipa("B", ("data", "block", "destroyed"), (0, GRANULE)), IPA), _TOP_IPA),
}
"""Per command, one strategy per input register X1.. (inputs as in rmm/dispatch.py), each
mostly values that reach the command's later checks and sometimes any bad value."""

Call = tuple[str, tuple[Arg, ...]]
"""(command name, symbolic inputs): what hypothesis prints for a failing sequence."""
_B_TOP = _ipa("B", ("block", "fold", "unknown", "ram", "empty"), (0, GRANULE))
MATCHED: dict[RmiFid, st.SearchStrategy[tuple[Arg, ...]]] = {
    F.RMI_PSCI_COMPLETE: st.tuples(st.sampled_from([(Pa("rec", 2), Pa("rec", 3)), (Pa("rec", 4), Pa("rec", 1)),
                                                    (Pa("rec", 5), Pa("rec", 3))]),
                                   _arg(st.sampled_from([0, to_u64(-3)]), WORD)).map(lambda t: (*t[0], t[1])),
    F.RMI_RTT_SET_RIPAS: st.tuples(st.sampled_from([(Pa("rec", 1), Ipa("B", "data")),
                                                    (Pa("rec", 1), Ipa("B", "destroyed")),
                                                    (Pa("rec", 3), Ipa("B", "block", GRANULE)),
                                                    (Pa("rec", 4), Ipa("B", "block"))]),
                                   _arg(_B_TOP, IPA)).map(lambda t: (Pa("rd", 1), *t[0], t[1])),
}
"""Inputs that must match each other to get far (the caller and the target its request names;
the REC and the base its RIPAS request has reached): drawn jointly half the time."""
CALLS = {fid: st.tuples(st.just(fid.name),
                        _weighted((1, st.tuples(*args)), (1, MATCHED[fid])) if fid in MATCHED else st.tuples(*args))
         for fid, args in ARGS.items()}
ANY_CALL = st.one_of(*CALLS.values())


def _focused(fid: RmiFid) -> st.SearchStrategy[list[Call]]:
    """Sequences of 10 to 40 distinct calls, about three in four of them ``fid`` and the rest any
    command (distinct: left alone, hypothesis repeats list elements so often that a derandomized
    run of 20 sequences held 19 different DATA_CREATE calls instead of 52)."""
    return st.lists(_weighted((3, CALLS[fid]), (1, ANY_CALL)), min_size=10, max_size=40, unique=True)


# == running and checking a sequence =============================================================

class Runner:
    """Issues calls on CPU 0 of a population's machine and checks properties 1-3 after each."""

    def __init__(self, pop: Population, log: bool = True) -> None:
        self.pop = pop
        self.log = log and currently_in_test_context()
        self.m = pop.m
        self.cpu = pop.t.cpu
        self.pas = pop.footprint
        self.before = self._state()

    def resolve(self, arg: Arg) -> int:
        if isinstance(arg, int):
            return arg
        if isinstance(arg, Desc):
            return (self.resolve(arg.addr) | arg.attrs) & U64
        if isinstance(arg, Ipa):
            return (IPA_NAMES[arg.name](self.pop.realms[arg.realm].s2sz) + arg.offset) & U64
        pas = self.pop.roles[arg.role]
        return pas[arg.index % len(pas)] + arg.offset

    def _state(self) -> tuple[Snapshot, bytes]:
        """The footprint: footprint.snapshot plus the VMID bitmap (REALM_CREATE reserves a VMID
        before its last checks, so a failure must hand it back)."""
        buf = self.m.control.buf
        return snapshot(self.m, *self.pas), bytes(buf[OFF_VMID_BITMAP:OFF_VMID_BITMAP + VMID_BITMAP_BYTES])

    def describe(self, name: str, args: tuple[Arg, ...]) -> str:
        """The call as a line of Python that replays it (the junk registers are PAD's), with the
        population's names."""
        values = [self.resolve(a) for a in args]
        return (f"cpu.smc(F.{name}, {', '.join(hex(v) for v in values)}, *PAD[{len(values)}:])"
                f"  # {', '.join(self.pop.name(v) for v in values)}")

    def call(self, name: str, args: tuple[Arg, ...]) -> tuple[int, ...]:
        fid = F[name]
        values = [self.resolve(a) for a in args]
        regs_in = values + PAD[len(values):]
        text = self.describe(name, args)
        if self.log:
            note(text)
        try:
            regs = self.cpu.smc(fid, *regs_in)
        except RmmInternalError as exc:
            raise AssertionError(f"{text}\n  raised RmmInternalError: {exc}") from exc
        assert not self.m.dead, f"{text}\n  left the machine dead: {self.m.dead_reason}"
        _check_registers(fid, regs, text)
        after = self._state()
        snap, _ = after
        assert not any(snap.locks), f"{text}\n  returned holding granule locks: " + \
            ", ".join(f"{self.m.dram_base + i * GRANULE:#x}" for i, lock in enumerate(snap.locks) if lock)
        if regs[0] != SUCCESS and after != self.before:
            changes = [self._with_pa(c) for c in self.before[0].diff(snap)]
            changes += ["VMID bitmap"] if after[1] != self.before[1] else []
            raise AssertionError(f"{text}\n  failed with {regs[0]:#x} but changed the footprint: {changes}")
        self.before = after
        return regs

    def _with_pa(self, change: str) -> str:
        """footprint.Snapshot.diff's 'granule N: ...' with the granule's PA and population name."""
        if not change.startswith("granule "):
            return change
        idx = int(change.split()[1].rstrip(":"))
        pa = self.m.dram_base + idx * GRANULE
        return f"granule {idx} ({pa:#x} {self.pop.name(pa)}):{change.split(':', 1)[1]}"

    def run(self, calls: list[Call]) -> None:
        for name, args in calls:
            self.call(name, args)
        report = invariants(self.m)
        assert report.ok, f"after the sequence\n  {report}"


def _check_registers(fid: RmiFid, regs: tuple[int, ...], text: str) -> None:
    """Properties 1 and 2: five u64s, an RMI 1.0 return code, unused outputs (X4 too) 0."""
    assert isinstance(regs, tuple) and len(regs) == 5, f"{text}\n  returned {regs!r}"
    assert all(isinstance(r, int) and 0 <= r <= U64 for r in regs), f"{text}\n  returned {regs!r}"
    x0 = regs[0]
    status, index = x0 & 0xFF, (x0 >> 8) & 0xFF
    assert x0 >> 16 == 0 and status <= RmiStatus.RMI_ERROR_RTT, f"{text}\n  X0 {x0:#x} is no RMI 1.0 return code"
    if status == RmiStatus.RMI_ERROR_RTT:
        assert index <= 3, f"{text}\n  X0 {x0:#x}: RTT level {index} (LPA2 is not modelled)"
    elif status == RmiStatus.RMI_ERROR_REALM and fid == F.RMI_REC_ENTER:
        assert index in (0, 1), f"{text}\n  X0 {x0:#x}: REC_ENTER realm index {index}"
    else:
        assert index == 0, f"{text}\n  X0 {x0:#x}: index {index} with status {RmiStatus(status).name}"
    outputs = COMMANDS[fid].outputs
    assert all(r == 0 for r in regs[outputs + 1:5]), f"{text}\n  X1..X4 {regs[1:]} beyond {outputs} outputs"


def _attempt(calls: list[Call], log: bool = False) -> str | None:
    """Run ``calls`` on a fresh machine and population; the first broken property, or None."""
    with Machine.create("host", cpus=1) as m:
        runner = Runner(build(m), log)
        try:
            runner.run(calls)
        except AssertionError as exc:
            return str(exc)
        return None


def _kind(failure: str) -> str:
    """What broke, without the values: the command (or 'after the sequence') and the first two
    words of the second line that hold no number ('failed with', 'raised RmmInternalError:',
    'invariant violations:' ...)."""
    lines = failure.splitlines()
    words = [w for w in " ".join(lines[1:2]).split() if not any(c.isdigit() for c in w)]
    return " ".join([lines[0].split(",")[0], *words[:2]])


def _minimise(calls: list[Call], kind: str) -> list[Call]:
    """Greedy delta debugging: drop calls one at a time while the same kind of failure remains.

    Hypothesis's own shrinker is switched off (FUZZ): with a fresh machine per attempt it takes
    minutes on these sequences, and dropping calls is what makes a reproduction short.
    """
    for _ in range(3):
        before = len(calls)
        for i in reversed(range(len(calls))):
            shorter = calls[:i] + calls[i + 1:]
            failure = _attempt(shorter)
            if failure is not None and _kind(failure) == kind:
                calls = shorter
        if len(calls) == before:
            break
    return calls


def _run(calls: list[Call]) -> None:
    """Properties 1-4 over ``calls``; on a failure, report the shortest sequence found that
    fails the same way, as SMCs on a fresh ``build(Machine.create("host", cpus=1))``."""
    failure = _attempt(calls)
    if failure is None:
        return
    short = _minimise(calls, _kind(failure))
    final = _attempt(short, log=True) or failure
    with Machine.create("host", cpus=1) as m:
        runner = Runner(build(m), log=False)
        replay = "\n".join(runner.describe(name, args) for name, args in short)
    raise AssertionError(f"{final}\n\nReproduction ({len(short)} of {len(calls)} calls), in this module: "
                         f"m = Machine.create('host', cpus=1); pop = build(m); cpu = pop.t.cpu; then\n{replay}")


# == the fuzz tests ==============================================================================

FUZZ = settings(max_examples=16, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""Derandomized, no example database, no hypothesis shrinking (``_minimise`` does it)."""


def test_vocabulary_covers_every_command() -> None:
    """ARGS names every RMI 1.0 command once, with one strategy per input register of the
    dispatch table, so the fuzz tests below reach every command."""
    assert set(ARGS) == set(RmiFid)
    assert {fid: len(args) for fid, args in ARGS.items()} == {fid: COMMANDS[fid].inputs for fid in RmiFid}


def test_population_is_consistent() -> None:
    """The population is what the fuzz tests assume: A NEW with an ASSIGNED level-2 block and an
    ASSIGNED_NS block, B ACTIVE with an ASSIGNED_NS page, every role non-empty, the invariant
    checker passes, and each template the fuzz strategies favour succeeds (DATA_CREATE_UNKNOWN,
    REALM_CREATE, REC_CREATE, RTT_SET_RIPAS, the three PSCI completions, REC_ENTER, RTT_FOLD of
    each foldable table)."""
    with Machine.create("host", cpus=1) as m:
        pop = build(m)
        report = invariants(m)
        assert report.ok, str(report)
        t, r = pop.t, pop.roles
        a, b = pop.realms["A"], pop.realms["B"]
        assert (a.start_level, len(a.roots), b.start_level, len(b.roots)) == (1, 2, 2, 8)
        assert t.read_entry(a, L2, 2)[1:4] == (2, 1, r["block"][0])           # ASSIGNED block
        assert t.read_entry(a, a.unprotected, 2)[1:4] == (2, 1, r["ns_block"][0] | NORMAL_RW)
        assert t.read_entry(b, b.unprotected, 3)[1:4] == (3, 1, r["ns"][0] | NORMAL_RW)
        assert all(r[role] for role in (*ROLES, *SPECIAL))
        for fid, *args in ((F.RMI_DATA_CREATE_UNKNOWN, b.rd, r["delegated"][3], 0x5000),
                           (F.RMI_REALM_CREATE, r["spare_rd"][0], r["realm_params"][0]),
                           (F.RMI_REC_CREATE, a.rd, r["spare_rec"][0], r["rec_params"][0]),
                           (F.RMI_RTT_SET_RIPAS, b.rd, r["rec"][1], 0, 0x1000),
                           (F.RMI_PSCI_COMPLETE, r["rec"][2], r["rec"][3], 0),
                           (F.RMI_PSCI_COMPLETE, r["rec"][4], r["rec"][1], 0),
                           (F.RMI_PSCI_COMPLETE, r["rec"][5], r["rec"][3], 0),
                           (F.RMI_REC_ENTER, r["rec"][1], r["run"][0]),
                           (F.RMI_RTT_FOLD, a.rd, 2 * L2, 3),
                           (F.RMI_RTT_FOLD, b.rd, 2 * L2, 3),
                           (F.RMI_RTT_FOLD, b.rd, b.unprotected + L2, 3)):
            assert t.smc(fid, *args)[0] == SUCCESS, F(fid).name
        report = invariants(m)
        assert report.ok, str(report)


@pytest.mark.parametrize("fid", list(RmiFid), ids=lambda f: f.name)
def test_fuzz_command(fid: RmiFid) -> None:
    """Property (hypothesis, properties 1-4 of the module docstring): sequences of 10 to 40
    distinct calls, about three in four of them ``fid`` and the rest any command, every argument
    from the bad-address vocabulary, on a fresh population each: no RmmInternalError, valid
    return codes, no footprint on failure, no lock held, invariants at the end."""

    @FUZZ
    @given(calls=_focused(fid))
    def prop(calls: list[Call]) -> None:
        _run(calls)

    prop()


def test_fuzz_any_sequence() -> None:
    """Property (hypothesis, properties 1-4): sequences of 10 to 40 calls of any commands,
    repeats allowed, so that one command meets the state another left (a run page delegated, an
    RTT destroyed, a REC created or destroyed, a realm made or torn down)."""

    @settings(FUZZ, max_examples=40)
    @given(calls=st.lists(ANY_CALL, min_size=10, max_size=40))
    def prop(calls: list[Call]) -> None:
        _run(calls)

    prop()


# == explicit wrong-object cases =================================================================

def _refused(pop: Population, name: str, args: tuple[Arg, ...], x0: int = INPUT) -> None:
    """The call returns exactly (x0, 0, 0, 0, 0), leaves no footprint, holds no lock and the
    machine lives (Runner.call checks all but the exact registers)."""
    regs = Runner(pop).call(name, args)
    assert regs == (x0, 0, 0, 0, 0), f"{name}{args} -> {regs}"


def _accepted(pop: Population, name: str, args: tuple[Arg, ...]) -> None:
    """The control: with the right object in place the call gets past the object checks."""
    regs = Runner(pop).call(name, args)
    assert regs[0] != INPUT, f"control {name}{args} -> {regs[0]:#x}"


WRONG_RD = [Pa("rec", 0), Pa("rec_aux", 0), Pa("rtt", 0), Pa("rtt", 2), Pa("data", 0), Pa("block", 1),
            Pa("delegated", 0), Pa("ns", 0)]
"""Granules that are not an RD: a REC, a REC_AUX, a root and a non-root RTT, DATA (measured and
in a block), DELEGATED, NS."""

WITH_RD: dict[str, Callable[[Arg], tuple[Arg, ...]]] = {
    "RMI_DATA_CREATE": lambda rd: (rd, Pa("delegated", 3), Ipa("A", "empty"), Pa("src"), 0),
    "RMI_DATA_CREATE_UNKNOWN": lambda rd: (rd, Pa("delegated", 3), Ipa("A", "empty")),
    "RMI_DATA_DESTROY": lambda rd: (rd, Ipa("A", "data")),
    "RMI_REALM_ACTIVATE": lambda rd: (rd,),
    "RMI_REALM_DESTROY": lambda rd: (rd,),
    "RMI_REC_CREATE": lambda rd: (rd, Pa("spare_rec"), Pa("rec_params")),
    "RMI_REC_AUX_COUNT": lambda rd: (rd,),
    "RMI_RTT_CREATE": lambda rd: (rd, Pa("delegated", 3), Ipa("A", "l1"), 2),
    "RMI_RTT_DESTROY": lambda rd: (rd, Ipa("A", "data"), 3),
    "RMI_RTT_FOLD": lambda rd: (rd, Ipa("A", "data"), 3),
    "RMI_RTT_READ_ENTRY": lambda rd: (rd, Ipa("A", "data"), 3),
    "RMI_RTT_MAP_UNPROTECTED": lambda rd: (rd, Ipa("A", "unprot", L2), 2, Desc(Pa("ns_block"), NORMAL_RW)),
    "RMI_RTT_UNMAP_UNPROTECTED": lambda rd: (rd, Ipa("A", "unprot"), 2),
    "RMI_RTT_INIT_RIPAS": lambda rd: (rd, Ipa("A", "empty"), Ipa("A", "empty", GRANULE)),
    "RMI_RTT_SET_RIPAS": lambda rd: (rd, Pa("rec", 1), Ipa("B", "data"), Ipa("B", "unknown")),
}
"""Every command that takes an RD, with its other inputs valid for realm A (B for SET_RIPAS)."""


@pytest.fixture
def pop(machine: Machine) -> Iterator[Population]:
    population = build(machine)
    yield population
    report = invariants(machine)
    assert report.ok, str(report)


@pytest.mark.parametrize("name", sorted(WITH_RD))
def test_wrong_object_as_rd(pop: Population, name: str) -> None:
    """rd_state, the failure condition of every command taking an RD (B4.3.1-3, 8-12, 15-22;
    ACS RD_STATE_REC, RD_STATE_RTT, RD_STATE_DATA, RD_STATE_DELEGATED, RD_STATE_UNDELEGATED): a
    REC, REC_AUX, root RTT, RTT, DATA (also inside a folded block), DELEGATED or NS granule
    passed as the RD -> RMI_ERROR_INPUT, no footprint, no lock held. The control: the right RD
    gets past the check (any status but ERROR_INPUT)."""
    for wrong in WRONG_RD:
        _refused(pop, name, WITH_RD[name](wrong))
    _accepted(pop, name, WITH_RD[name](Pa("rd", 1 if name == "RMI_RTT_SET_RIPAS" else 0)))


WRONG_REC = [Pa("rd", 0), Pa("rd", 1), Pa("rec_aux", 0), Pa("rec_aux", 40), Pa("rtt", 0), Pa("data", 0),
             Pa("block", 0), Pa("delegated", 0), Pa("ns", 0)]
"""Granules that are not a REC: both RDs, REC_AUX of A0 and of B1, a root RTT, DATA,
DELEGATED, NS."""

WITH_REC: dict[str, tuple[Callable[[Arg], tuple[Arg, ...]], Pa]] = {
    "RMI_REC_DESTROY": (lambda rec: (rec,), Pa("rec", 0)),
    "RMI_REC_ENTER": (lambda rec: (rec, Pa("run")), Pa("rec", 1)),
    "RMI_PSCI_COMPLETE(calling)": (lambda rec: (rec, Pa("rec", 3), 0), Pa("rec", 2)),
    "RMI_PSCI_COMPLETE(target)": (lambda rec: (Pa("rec", 2), rec, 0), Pa("rec", 3)),
    "RMI_RTT_SET_RIPAS": (lambda rec: (Pa("rd", 1), rec, Ipa("B", "data"), Ipa("B", "unknown")), Pa("rec", 1)),
}
"""Every REC input of a command, the others valid, and the REC that makes the call succeed."""


@pytest.mark.parametrize("case", sorted(WITH_REC))
def test_wrong_object_as_rec(pop: Population, case: str) -> None:
    """rec_gran_state / rec_state / calling_state / target_state (B4.3.13, B4.3.14, B4.3.7,
    B4.3.21; ACS REC_GRAN_STATE_RD, _REC_AUX, _RTT, _DATA, _DELEGATED, _UNDELEGATED): an RD
    (either realm), REC_AUX, RTT, DATA, DELEGATED or NS granule passed as a REC ->
    RMI_ERROR_INPUT, no footprint, no lock held. The control: the right REC makes the call
    succeed."""
    make, right = WITH_REC[case]
    name = case.split("(")[0]
    for wrong in WRONG_REC:
        _refused(pop, name, make(wrong))
    assert Runner(pop).call(name, make(right))[0] == SUCCESS


TWICE: dict[str, tuple[str, tuple[Arg, ...]]] = {
    "rtt == rd": ("RMI_RTT_CREATE", (Pa("rd"), Pa("rd"), Ipa("A", "l1"), 2)),
    "rtt == own root": ("RMI_RTT_CREATE", (Pa("rd"), Pa("rtt", 0), Ipa("A", "l1"), 2)),
    "rtt == rec": ("RMI_RTT_CREATE", (Pa("rd"), Pa("rec", 0), Ipa("A", "l1"), 2)),
    "data == rd": ("RMI_DATA_CREATE", (Pa("rd"), Pa("rd"), Ipa("A", "empty"), Pa("src"), 0)),
    "data == src": ("RMI_DATA_CREATE", (Pa("rd"), Pa("src"), Ipa("A", "empty"), Pa("src"), 0)),
    "data == its rtt": ("RMI_DATA_CREATE", (Pa("rd"), Pa("rtt", 3), Ipa("A", "empty"), Pa("src"), 0)),
    "unknown data == rd": ("RMI_DATA_CREATE_UNKNOWN", (Pa("rd"), Pa("rd"), Ipa("A", "empty"))),
    "unknown data == rec": ("RMI_DATA_CREATE_UNKNOWN", (Pa("rd"), Pa("rec", 0), Ipa("A", "empty"))),
    "rec == rd": ("RMI_REC_CREATE", (Pa("rd"), Pa("rd"), Pa("rec_params"))),
    "rec == existing rec": ("RMI_REC_CREATE", (Pa("rd"), Pa("rec", 0), Pa("rec_params"))),
    "rec == one of its aux": ("RMI_REC_CREATE", (Pa("rd"), Pa("a1_aux", 9), Pa("rec_params"))),
    "calling == target": ("RMI_PSCI_COMPLETE", (Pa("rec", 2), Pa("rec", 2), 0)),
    "set_ripas rd == rec (REC)": ("RMI_RTT_SET_RIPAS", (Pa("rec", 1), Pa("rec", 1), Ipa("B", "data"),
                                                        Ipa("B", "unknown"))),
    "set_ripas rd == rec (RD)": ("RMI_RTT_SET_RIPAS", (Pa("rd", 1), Pa("rd", 1), Ipa("B", "data"),
                                                       Ipa("B", "unknown"))),
    "realm rd == params": ("RMI_REALM_CREATE", (Pa("spare_rd"), Pa("spare_rd"))),
    "realm rd == rtt_base": ("RMI_REALM_CREATE", (Pa("c_root"), Pa("realm_params"))),
}
"""One granule in two roles (rtt[3] is A's level-3 table at IPA 0, which maps 0x5000)."""


@pytest.mark.parametrize("case", sorted(TWICE))
def test_same_granule_twice(pop: Population, case: str) -> None:
    """One granule passed in two roles (B4.3.15 rtt_state, B4.3.1 data_state / src_pas, B4.3.2
    data_state, B4.3.12 rec_state / aux_alias, B4.3.7 alias, B4.3.21 rd_state / rec_gran_state,
    B4.3.9 params_pas / alias; ACS ALIAS, RTT_BASE_RD_ALIASED, AUX_ALIASED) -> RMI_ERROR_INPUT,
    no footprint (REC_CREATE's aux claimed before the clash are DELEGATED again), no lock
    held."""
    name, args = TWICE[case]
    _refused(pop, name, args)


def test_rec_create_aux_clashes(pop: Population) -> None:
    """B4.3.12 aux_alias / aux_state (ACS AUX_ALIASED, AUX_REC, AUX_RD, AUX_DATA): RmiRecParams
    whose aux list repeats a granule, names the new REC, the RD, another REC's aux or a DATA
    granule -> RMI_ERROR_INPUT; every aux claimed before the clash is DELEGATED again, no lock
    held, no footprint."""
    t, r = pop.t, pop.roles
    aux = list(r["a1_aux"])
    clashes = {"repeat": aux[7], "rec": r["spare_rec"][0], "rd": r["rd"][0], "other aux": r["rec_aux"][0],
               "data": r["data"][0]}
    for where, pa in clashes.items():
        bad = aux.copy()
        bad[8] = pa
        params = t.rec_params(index=1, aux=tuple(bad))
        pop.add("ns", params)
        _refused(pop, "RMI_REC_CREATE", (Pa("rd"), Pa("spare_rec"), params))


@pytest.mark.parametrize("name,make", [
    ("RMI_REALM_CREATE", lambda p: (Pa("spare_rd"), p)),
    ("RMI_REC_CREATE", lambda p: (Pa("rd"), Pa("spare_rec"), p)),
    ("RMI_REC_ENTER", lambda p: (Pa("rec", 1), p)),
    ("RMI_DATA_CREATE", lambda p: (Pa("rd"), Pa("delegated", 3), Ipa("A", "empty"), p, 0)),
], ids=["realm_create-params", "rec_create-params", "rec_enter-run", "data_create-src"])
def test_host_pointer_not_ns(pop: Population, name: str, make: Callable[[Arg], tuple[Arg, ...]]) -> None:
    """params_pas / run_pas / src_pas (B4.3.9, B4.3.12, B4.3.14, B4.3.1; ACS PARAMS_PAS_REALM,
    PARAMS_PAS_SECURE, SRC_PAS_REALM, SRC_PAS_SECURE, RUN_PAS_*): the host structure pointer
    names a DELEGATED, RD, REC, RTT or DATA granule, a Secure granule or MMIO ->
    RMI_ERROR_INPUT, no footprint, no lock held."""
    for ptr in (Pa("delegated", 3), Pa("rd", 0), Pa("rd", 1), Pa("rec", 1), Pa("rtt", 0), Pa("data", 0),
                Pa("secure"), Pa("mmio")):
        _refused(pop, name, make(ptr))


# == deterministic scenarios =====================================================================

RTT = RmiStatus.RMI_ERROR_RTT
SCENARIOS: dict[str, list[tuple[str, tuple[Arg, ...], int]]] = {
    "realm C lifecycle": [
        ("RMI_REALM_CREATE", (Pa("spare_rd"), Pa("realm_params", 0)), SUCCESS),
        ("RMI_REALM_CREATE", (Pa("spare_rd"), Pa("realm_params", 0)), INPUT),         # VMID 9 taken
        ("RMI_RTT_CREATE", (Pa("spare_rd"), Pa("delegated", 3), Ipa("A", "l1"), 2), SUCCESS),
        ("RMI_REALM_DESTROY", (Pa("spare_rd"),), RmiStatus.RMI_ERROR_REALM),           # live RTT
        ("RMI_RTT_DESTROY", (Pa("spare_rd"), Ipa("A", "l1"), 2), SUCCESS),
        ("RMI_REALM_DESTROY", (Pa("spare_rd"),), SUCCESS),
        ("RMI_GRANULE_UNDELEGATE", (Pa("spare_rd"),), SUCCESS),
        ("RMI_GRANULE_UNDELEGATE", (Pa("c_root"),), SUCCESS),
        ("RMI_REALM_CREATE", (Pa("spare_rd"), Pa("realm_params", 0)), INPUT),         # RD is NS again
    ],
    "REC A1, activation, entry, DATA teardown": [
        ("RMI_REC_CREATE", (Pa("rd", 0), Pa("spare_rec"), Pa("rec_params", 0)), SUCCESS),
        ("RMI_REC_DESTROY", (Pa("spare_rec"),), SUCCESS),
        ("RMI_REC_CREATE", (Pa("rd", 0), Pa("spare_rec"), Pa("rec_params", 0)), INPUT),  # index 1 used
        ("RMI_REC_ENTER", (Pa("rec", 0), Pa("run", 0)), RmiStatus.RMI_ERROR_REALM),      # realm NEW
        ("RMI_REALM_ACTIVATE", (Pa("rd", 0),), SUCCESS),
        ("RMI_REC_ENTER", (Pa("rec", 0), Pa("run", 0)), SUCCESS),
        ("RMI_DATA_DESTROY", (Pa("rd", 0), Ipa("A", "data")), SUCCESS),
        ("RMI_DATA_CREATE", (Pa("rd", 0), Pa("delegated", 3), Ipa("A", "data"), Pa("src"), 0),
         RmiStatus.RMI_ERROR_REALM),                                                     # realm ACTIVE
        ("RMI_DATA_CREATE_UNKNOWN", (Pa("rd", 0), Pa("delegated", 3), Ipa("A", "data")), SUCCESS),
        ("RMI_RTT_INIT_RIPAS", (Pa("rd", 0), Ipa("A", "empty"), Ipa("A", "block")), RmiStatus.RMI_ERROR_REALM),
    ],
    "folds, unfolds, unprotected teardown": [
        ("RMI_RTT_FOLD", (Pa("rd", 1), Ipa("B", "fold"), 3), SUCCESS),
        ("RMI_RTT_CREATE", (Pa("rd", 1), Pa("delegated", 3), Ipa("B", "fold"), 3), SUCCESS),
        ("RMI_RTT_FOLD", (Pa("rd", 1), Ipa("B", "unprot", L2), 3), SUCCESS),
        ("RMI_RTT_UNMAP_UNPROTECTED", (Pa("rd", 1), Ipa("B", "unprot"), 3), SUCCESS),
        ("RMI_RTT_MAP_UNPROTECTED", (Pa("rd", 1), Ipa("B", "unprot"), 3, Desc(Pa("ns"), NORMAL_RW)), SUCCESS),
        ("RMI_RTT_DESTROY", (Pa("rd", 1), Ipa("B", "unprot"), 3), SUCCESS),             # A5.5.8: not live
        ("RMI_RTT_UNMAP_UNPROTECTED", (Pa("rd", 1), Ipa("B", "unprot"), 3), RTT | 2 << 8),
        ("RMI_RTT_MAP_UNPROTECTED", (Pa("rd", 1), Ipa("B", "unprot"), 2, Desc(Pa("ns_block"), NORMAL_RW)), SUCCESS),
        ("RMI_RTT_FOLD", (Pa("rd", 0), Ipa("A", "fold"), 3), SUCCESS),
        ("RMI_RTT_CREATE", (Pa("rd", 0), Pa("delegated", 0), Ipa("A", "block"), 3), SUCCESS),  # unfolds
        ("RMI_DATA_DESTROY", (Pa("rd", 0), Ipa("A", "block", GRANULE)), SUCCESS),
        ("RMI_RTT_FOLD", (Pa("rd", 0), Ipa("A", "block"), 3), RTT | 3 << 8),           # not homogeneous
        ("RMI_RTT_INIT_RIPAS", (Pa("rd", 0), Ipa("A", "block", GRANULE), Ipa("A", "fold")), SUCCESS),
    ],
    "RIPAS changes and PSCI completions": [
        ("RMI_RTT_SET_RIPAS", (Pa("rd", 1), Pa("rec", 1), Ipa("B", "data"), Ipa("B", "block")), SUCCESS),
        ("RMI_RTT_SET_RIPAS", (Pa("rd", 1), Pa("rec", 1), Ipa("B", "destroyed"), Ipa("B", "block")),
         RTT | 3 << 8),                                                                  # DESTROYED stays
        ("RMI_RTT_SET_RIPAS", (Pa("rd", 1), Pa("rec", 3), Ipa("B", "block", GRANULE), Ipa("B", "fold")),
         RTT | 2 << 8),                                                                  # base_align
        ("RMI_RTT_SET_RIPAS", (Pa("rd", 1), Pa("rec", 4), Ipa("B", "block"), Ipa("B", "block", GRANULE)),
         RTT | 2 << 8),                                                                  # no_progress
        ("RMI_RTT_SET_RIPAS", (Pa("rd", 0), Pa("rec", 1), Ipa("B", "destroyed"), Ipa("B", "block")),
         RmiStatus.RMI_ERROR_REC),                                                       # rec_owner
        ("RMI_PSCI_COMPLETE", (Pa("rec", 2), Pa("rec", 3), to_u64(-3)), SUCCESS),        # CPU_ON denied
        ("RMI_PSCI_COMPLETE", (Pa("rec", 2), Pa("rec", 3), 0), INPUT),                   # nothing pending
        ("RMI_PSCI_COMPLETE", (Pa("rec", 4), Pa("rec", 1), to_u64(-3)), INPUT),          # B0 is on
        ("RMI_PSCI_COMPLETE", (Pa("rec", 4), Pa("rec", 1), 0), SUCCESS),                 # ALREADY_ON
        ("RMI_PSCI_COMPLETE", (Pa("rec", 5), Pa("rec", 1), 0), INPUT),                   # wrong target
        ("RMI_PSCI_COMPLETE", (Pa("rec", 5), Pa("rec", 3), 1), INPUT),                   # status
        ("RMI_PSCI_COMPLETE", (Pa("rec", 5), Pa("rec", 3), 0), SUCCESS),                 # AFFINITY_INFO
        ("RMI_REC_ENTER", (Pa("rec", 3), Pa("run", 0)), RmiStatus.RMI_ERROR_REC),        # B2 not runnable
        ("RMI_REC_ENTER", (Pa("rec", 2), Pa("run", 0)), SUCCESS),
        ("RMI_REC_ENTER", (Pa("rec", 1), Pa("run", 5)), RmiStatus.RMI_ERROR_REC),        # ICH_HCR bit
        ("RMI_REC_ENTER", (Pa("rec", 1), Pa("run", 6)), RmiStatus.RMI_ERROR_REC),        # LR with HW
        ("RMI_REC_ENTER", (Pa("rec", 1), Pa("run", 7)), RmiStatus.RMI_ERROR_REC),        # repeated vINTID
        ("RMI_REC_ENTER", (Pa("rec", 1), Pa("run", 1)), SUCCESS),                        # EMUL_MMIO allowed
        ("RMI_REC_ENTER", (Pa("rec", 1), Pa("run", 1)), RmiStatus.RMI_ERROR_REC),        # ... not twice
        ("RMI_REC_ENTER", (Pa("rec", 1), Pa("run", 2)), SUCCESS),                        # INJECT_SEA
    ],
    "broken host structures": [
        *(("RMI_REALM_CREATE", (Pa("spare_rd"), Pa("realm_params", i)), INPUT) for i in range(1, 14)),
        *(("RMI_REC_CREATE", (Pa("rd", 0), Pa("spare_rec"), Pa("rec_params", i)), INPUT) for i in range(2, 8)),
        ("RMI_REC_CREATE", (Pa("rd", 0), Pa("spare_rec"), Pa("rec_params", 1)), SUCCESS),  # not runnable
        ("RMI_REC_CREATE", (Pa("rd", 1), Pa("delegated", 3), Pa("garbage")), INPUT),
        ("RMI_REALM_CREATE", (Pa("spare_rd"), Pa("garbage")), INPUT),
        ("RMI_REC_ENTER", (Pa("rec", 1), Pa("garbage")), RmiStatus.RMI_ERROR_REC),
    ],
}
"""Sequences that reach the deep paths the random sequences reach only now and then, with the
X0 each call must return; indices as in ``build`` (rec: A0, B0..B4; run: zeros, EMUL_MMIO,
INJECT_SEA, all flags, unknown flag, ICH_HCR bit, LR HW, repeated vINTID, valid LRs)."""


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str) -> None:
    """A fixed sequence under the fuzz properties 1-4 (no crash, valid X0, no footprint on
    failure, invariants and no lock held at the end), each call returning the X0 noted."""
    with Machine.create("host", cpus=1) as m:
        runner = Runner(build(m))
        got = [(call, args, runner.call(call, args)[0]) for call, args, _ in SCENARIOS[name]]
        wrong = [f"{runner.describe(call, args)} -> {x0:#x}, expected {want:#x}"
                 for (call, args, x0), (_, _, want) in zip(got, SCENARIOS[name]) if x0 != want]
        assert not wrong, "\n".join(wrong)
        report = invariants(m)
        assert report.ok, str(report)
