"""The host's view of a realm, and the stage-2 operations a running realm needs from it.

The hypervisor model follows Linux KVM's CCA host (series v5..v12, RMM 1.0-rel0; digest in
shared/spec/kvm-client.md section 1). This module holds what building, running and tearing
down share:

    RealmSpec      what to build (IPA width, RAM, image, RECs, hash, RPV, teardown order)
    HostRealm      what was built: a frozen, picklable record of PAs (RD, roots, RECs and their
                   aux granules) that any CPU process can use, since the realm itself lives in
                   shared memory and the RMM lets any CPU serve any call on it
    HostError      the RMM answered something a correct RMM cannot (names command, arguments, X0)
    create_rtt_levels, fault_in, map_unprotected
                   KVM's realm_create_rtt_levels, realm_map_protected (4 KiB) and
                   realm_map_non_secure (map_protected and map_non_secure: the same, also
                   giving the number of RTTs created, which the run loop counts per realm)

Building is in realm_build.py and teardown in realm_teardown.py. Every call goes through
``cpu.smc`` (the host speaks SMC only); every status is checked. Statuses a correct RMM can
return in a legitimate race (another vCPU created the table first, or mapped the page first)
are handled as KVM handles them; anything else raises HostError.

Granules come from the shared NsAllocator and go back to it: a granule is delegated right after
it is allocated and freed right after it is undelegated, so the allocator's count is exactly
what the host has handed to realms (plus pages it holds for a moment, such as parameter pages).

This module owns the host's realm records and its stage-2 mapping policy. It must not import
the RMM or EL3 (a test enforces the layering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rmm_mp.abi.rmi import RMI_ABI_VERSION, RmiFid, RmiStatus
from rmm_mp.abi.smccc import SMC_UNKNOWN
from rmm_mp.hw.faults import RmmInternalError

if TYPE_CHECKING:
    from rmm_mp.host.nsalloc import NsAllocator
    from rmm_mp.machine import Cpu

F = RmiFid
VERSION = int(F.RMI_VERSION)
FEATURES = int(F.RMI_FEATURES)
DELEGATE = int(F.RMI_GRANULE_DELEGATE)
UNDELEGATE = int(F.RMI_GRANULE_UNDELEGATE)
RTT_CREATE = int(F.RMI_RTT_CREATE)
DATA_CREATE_UNKNOWN = int(F.RMI_DATA_CREATE_UNKNOWN)
MAP_UNPROTECTED = int(F.RMI_RTT_MAP_UNPROTECTED)

SUCCESS = int(RmiStatus.RMI_SUCCESS)
ERROR_INPUT = int(RmiStatus.RMI_ERROR_INPUT)
ERROR_REALM = int(RmiStatus.RMI_ERROR_REALM)
ERROR_REC = int(RmiStatus.RMI_ERROR_REC)
ERROR_RTT = int(RmiStatus.RMI_ERROR_RTT)

GRANULE = 4096
PAGE_LEVEL = 3
MAX_ROOTS = 16
TEARDOWN_ORDERS = ("legacy", "v12")
"""KVM's two teardown orders (kvm-client.md 1.4): stage 2 first, or RECs first."""
S2_NORMAL_WB = 0x6 << 2
"""Stage-2 MemAttr[3:0] = 0b0110 (FWB Normal Write-Back), as KVM's MT_S2_FWB_NORMAL."""
S2AP_RW = 0x3 << 6
NS_MAP_ATTRS = S2_NORMAL_WB | S2AP_RW
"""Attributes of KVM's unprotected mappings: PTE_S2_MEMATTR(MT_S2_FWB_NORMAL) | S2AP_R | S2AP_W."""


def status(x0: int) -> int:
    return x0 & 0xFF


def index(x0: int) -> int:
    return (x0 >> 8) & 0xFF


def rtt_error(level: int) -> int:
    """X0 of (RMI_ERROR_RTT, level)."""
    return ERROR_RTT | ((level & 0xFF) << 8)


def describe_x0(x0: int) -> str:
    if x0 == SMC_UNKNOWN:
        return "SMC_UNKNOWN (command not implemented)"
    try:
        name = RmiStatus(x0 & 0xFF).name
    except ValueError:
        name = f"status {x0 & 0xFF} (not an RMI 1.0 status)"
    return f"{name}, index {index(x0)}" if index(x0) or x0 >> 16 else name


_STATUSES = frozenset(int(s) for s in RmiStatus)
_INDEXED = {ERROR_REALM: 1, ERROR_RTT: 3}
"""Statuses whose index RMI 1.0 sets, with the largest it sets (RMI_ERROR_REALM 0 or 1, RMI_ERROR_RTT
the walk's level, 0 to 3 without LPA2); the others come with index 0."""


def status_name(x0: int) -> str:
    """The status ``x0`` returns, as a finding's identity names it: the status's name, an index left
    out (an RMI_ERROR_RTT's level is another on a shrunk run's replay), ``SMC_UNKNOWN``, or the
    whole X0 (``X0 0x100``) when it is no return code of RMI 1.0: a status it does not define, an
    index on a status that has none or above the largest its status has (RMI_ERROR_REALM 2, an
    RMI_ERROR_RTT level 4), or bits 63:16 set (MBZ). Taking describe_x0's first part, an X0 of
    RMI_SUCCESS with other bits set was named RMI_SUCCESS, as if the command succeeded."""
    if x0 == SMC_UNKNOWN:
        return "SMC_UNKNOWN"
    if x0 >> 16 or status(x0) not in _STATUSES or index(x0) > _INDEXED.get(status(x0), 0):
        return f"X0 {x0:#x}"
    return RmiStatus(status(x0)).name


class HostError(RuntimeError):
    """The RMM returned something a correct RMM cannot return to this host's request.

    Attributes:
        command: the RMI command name; arguments: its X1..; x0: what came back; why: what the host expected.
    """

    def __init__(self, command: int | str, args: tuple[int, ...], x0: int, why: str) -> None:
        name = F(command).name if isinstance(command, int) else command
        shown = ", ".join(f"{a:#x}" for a in args)
        super().__init__(f"{name}({shown}) returned X0 = {x0:#x} ({describe_x0(x0)}): {why}")
        self.command = name
        self.arguments = args
        self.x0 = x0
        self.why = why


# -- geometry (KVM arch/arm64/kvm/rme.c) ---------------------------------------------------------

def block_size(level: int) -> int:
    """Bytes one RTT entry at ``level`` maps (L3 4 KiB, L2 2 MiB, L1 1 GiB, L0 512 GiB)."""
    return 1 << (12 + 9 * (PAGE_LEVEL - level))


def start_level(ipa_width: int) -> int:
    """KVM's start level: 4 - floor((ipa_width - 8) / 9) (stage2_pgtable_levels), moved up a
    level while more than 16 concatenated roots would be needed."""
    level = 4 - (ipa_width - 8) // 9
    while num_roots(ipa_width, level) > MAX_ROOTS:
        level -= 1
    return level


def num_roots(ipa_width: int, level: int) -> int:
    """Concatenated root RTTs at ``level`` for this IPA width (rtt_num_start)."""
    resolved = 12 + 9 * (PAGE_LEVEL - level + 1)
    return 1 << max(0, ipa_width - resolved)


# -- records -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RealmSpec:
    """What create_realm builds.

    Attributes:
        ipa_width: RmiRealmParams.s2sz (32..52, at most RMI_FEATURES S2SZ).
        ram_base, ram_size: guest RAM, set to RIPAS RAM by RTT_INIT_RIPAS (granule aligned, in
            the protected half); never populated at build time: faulted in lazily.
        hash_algo: RmiHashAlgorithm (0 SHA-256, 1 SHA-512).
        rpv: the Realm Personalisation Value (up to 64 bytes, zero padded).
        num_recs: RECs to create (REC 0 runnable, the others not, as KVM does).
        image, image_ipa: bytes loaded with DATA_CREATE at image_ipa (default ram_base), one
            granule at a time, the last one zero padded.
        measure: DATA_CREATE flags MEASURE_CONTENT (else NO_MEASURE_CONTENT).
        entry: the RECs' initial PC (default image_ipa).
        gprs: REC 0's X0..X7 (KVM: x0 = DTB address); the other RECs start with zeros.
        teardown: the default order of destroy_realm, "legacy" or "v12".
        activate: REALM_ACTIVATE at the end of the build.
    """

    ipa_width: int = 40
    ram_base: int = 0x8000_0000
    ram_size: int = 8 << 20
    hash_algo: int = 0
    rpv: bytes = b""
    num_recs: int = 1
    image: bytes = b""
    image_ipa: int | None = None
    measure: bool = True
    entry: int | None = None
    gprs: tuple[int, ...] = ()
    teardown: str = "v12"
    activate: bool = True

    def __post_init__(self) -> None:
        if not 32 <= self.ipa_width <= 52:
            raise ValueError(f"RealmSpec.ipa_width = {self.ipa_width!r}: expected 32..52 bits")
        par = 1 << (self.ipa_width - 1)
        for name in ("ram_base", "ram_size"):
            value = getattr(self, name)
            if value < 0 or value % GRANULE:
                raise ValueError(f"RealmSpec.{name} = {value:#x}: expected a multiple of 4 KiB")
        if self.ram_base + self.ram_size > par:
            raise ValueError(f"RealmSpec RAM [{self.ram_base:#x}, {self.ram_base + self.ram_size:#x}) must lie in the "
                             f"protected IPA range [0, {par:#x}) of a {self.ipa_width}-bit realm")
        ipa = self.load_ipa
        if ipa % GRANULE or ipa + self.image_granules * GRANULE > par:
            raise ValueError(f"RealmSpec.image_ipa = {ipa:#x}: expected a 4 KiB aligned IPA with the "
                             f"{len(self.image)}-byte image inside [0, {par:#x})")
        if self.hash_algo not in (0, 1):
            raise ValueError(f"RealmSpec.hash_algo = {self.hash_algo!r}: expected 0 (SHA-256) or 1 (SHA-512)")
        if len(self.rpv) > 64:
            raise ValueError(f"RealmSpec.rpv is {len(self.rpv)} bytes: at most 64")
        if not 0 <= self.num_recs <= 1023:
            raise ValueError(f"RealmSpec.num_recs = {self.num_recs!r}: expected 0..1023")
        if len(self.gprs) > 8:
            raise ValueError(f"RealmSpec.gprs has {len(self.gprs)} values: RmiRecParams holds X0..X7")
        if self.teardown not in TEARDOWN_ORDERS:
            raise ValueError(f"RealmSpec.teardown = {self.teardown!r}: expected one of {TEARDOWN_ORDERS}")

    @property
    def load_ipa(self) -> int:
        return self.ram_base if self.image_ipa is None else self.image_ipa

    @property
    def entry_pc(self) -> int:
        return self.load_ipa if self.entry is None else self.entry

    @property
    def image_granules(self) -> int:
        return (len(self.image) + GRANULE - 1) // GRANULE


@dataclass(frozen=True)
class HostRec:
    """One REC as the host knows it: its granule, its aux granules and its MPIDR."""

    rec: int
    aux: tuple[int, ...]
    mpidr: int


@dataclass(frozen=True)
class HostRealm:
    """A realm the host built: PAs and geometry, picklable, usable from any CPU process."""

    rd: int
    rtt_base: int
    num_roots: int
    start_level: int
    ipa_width: int
    vmid: int
    hash_algo: int
    num_aux: int = 0
    recs: tuple[HostRec, ...] = ()
    teardown: str = "v12"
    ram: tuple[int, int] = (0, 0)
    """(base IPA, size) of the RIPAS RAM range."""
    image: tuple[int, int] = (0, 0)
    """(IPA, granules) of the populated image."""
    roots_kept: bool = False
    """The root run is the caller's (create_realm's rtt_base): destroy_realm undelegates it and
    leaves it allocated, for the caller's next realm."""

    @property
    def roots(self) -> tuple[int, ...]:
        return tuple(self.rtt_base + i * GRANULE for i in range(self.num_roots))

    @property
    def par_size(self) -> int:
        """Size of the protected IPA range; also the lowest unprotected IPA (the shared bit)."""
        return 1 << (self.ipa_width - 1)

    @property
    def ipa_size(self) -> int:
        return 1 << self.ipa_width


def find_map_level(realm: HostRealm, start: int, end: int) -> int:
    """KVM's find_map_level: the coarsest level (not above the start level) whose block is
    aligned at ``start`` and fits before ``end``."""
    level = PAGE_LEVEL
    while level > realm.start_level:
        size = block_size(level - 1)
        if start % size or start + size > end:
            break
        level -= 1
    return level


# -- granules --------------------------------------------------------------------------------------

def delegated_granule(cpu: "Cpu", alloc: "NsAllocator") -> int:
    """An allocated granule, delegated (KVM's alloc_delegated_granule)."""
    pa = alloc.alloc()
    x0 = cpu.smc(DELEGATE, pa)[0]
    if x0 != SUCCESS:
        alloc.free(pa)
        raise HostError(DELEGATE, (pa,), x0, "the allocator handed out this granule, so it must be NS and delegable")
    return pa


def release_granule(cpu: "Cpu", alloc: "NsAllocator", pa: int) -> None:
    """Undelegate a granule the RMM gave back (or never used) and free it (free_delegated_page)."""
    undelegate_granule(cpu, pa)
    alloc.free(pa)


def undelegate_granule(cpu: "Cpu", pa: int) -> None:
    """Undelegate a granule the RMM gave back (or never used), keeping it allocated."""
    x0 = cpu.smc(UNDELEGATE, pa)[0]
    if x0 != SUCCESS:
        raise HostError(UNDELEGATE, (pa,), x0, "the granule was returned to the host, so it must be DELEGATED")


# -- stage 2 -----------------------------------------------------------------------------------------

def create_rtt_levels(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, ipa: int, level: int,
                      max_level: int) -> int:
    """Create the RTTs for ``ipa`` at levels level+1 .. max_level (KVM realm_create_rtt_levels).

    An RTT_CREATE answered with (RMI_ERROR_RTT, level - 1) means the table exists already
    (another CPU created it first): the spare granule is released and the walk goes on.

    Returns:
        The number of RTTs this call created.
    """
    made = 0
    while level < max_level:
        level += 1
        rtt = delegated_granule(cpu, alloc)
        base = ipa & ~(block_size(level - 1) - 1)
        x0 = cpu.smc(RTT_CREATE, realm.rd, rtt, base, level)[0]
        if x0 == SUCCESS:
            made += 1
            continue
        release_granule(cpu, alloc, rtt)
        if x0 != rtt_error(level - 1):
            raise HostError(RTT_CREATE, (realm.rd, rtt, base, level), x0,
                            f"the tables above level {level} exist, so the RTT is created or already there")
    return made


def fault_in(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, ipa: int) -> int | None:
    """Back the protected page at ``ipa`` with a new zero page (KVM realm_map_protected, 4 KiB).

    A fresh page from the allocator, DELEGATE, DATA_CREATE_UNKNOWN; missing RTTs are created down
    to level 3. If DATA_CREATE_UNKNOWN finds the entry already assigned ((RMI_ERROR_RTT, 3)),
    another vCPU won the race for this fault: the page is undelegated and freed and None returned,
    and the caller re-enters the vCPU, as KVM does. KVM meets that race at DELEGATE instead (both
    vCPUs hold the same guest_memfd page); here every fault has a page of its own, so a DELEGATE
    that fails points at an RMM or allocator bug and raises HostError (naming the PA and X0)
    rather than sending the vCPU round the same fault (docs/deviations.md).

    Returns:
        The PA of the DATA granule now mapped at ``ipa``, or None if another CPU mapped it.

    Raises:
        HostError if the RMM answers what a correct RMM cannot (DELEGATE of the fresh page
        failing among them); OutOfGranules when the allocator has no page or table left.
    """
    return map_protected(cpu, alloc, realm, ipa)[0]


def map_protected(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, ipa: int) -> tuple[int | None, int]:
    """fault_in, also saying how many RTTs it created (the run loop counts them per realm).

    Returns:
        (fault_in's answer, the number of RTTs this call created).
    """
    if ipa % GRANULE or not 0 <= ipa < realm.par_size:
        raise ValueError(f"fault_in(ipa={ipa:#x}): expected a 4 KiB aligned protected IPA below {realm.par_size:#x}")
    pa = delegated_granule(cpu, alloc)
    made = 0
    x0 = cpu.smc(DATA_CREATE_UNKNOWN, realm.rd, pa, ipa)[0]
    if status(x0) == ERROR_RTT and index(x0) < PAGE_LEVEL:
        try:
            made = create_rtt_levels(cpu, alloc, realm, ipa, index(x0), PAGE_LEVEL)
        except RmmInternalError:
            raise
        except Exception:
            release_granule(cpu, alloc, pa)
            raise
        x0 = cpu.smc(DATA_CREATE_UNKNOWN, realm.rd, pa, ipa)[0]
    if x0 == SUCCESS:
        return pa, made
    release_granule(cpu, alloc, pa)
    if x0 == rtt_error(PAGE_LEVEL):
        return None, made
    raise HostError(DATA_CREATE_UNKNOWN, (realm.rd, pa, ipa), x0,
                    "the level-3 table exists and the page is delegated, so the entry is mapped or already assigned")


def map_unprotected(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, ipa: int, ns_pa: int) -> bool:
    """Map the NS page ``ns_pa`` at unprotected ``ipa`` (KVM realm_map_non_secure).

    RTT_MAP_UNPROTECTED at level 3 with a Normal-WB, read-write descriptor; missing RTTs are
    created; an ERROR_RTT after that means another CPU mapped the page first (ignored). The
    NS page stays the caller's: teardown unmaps it but does not free it.

    Returns:
        True if this call made the mapping.
    """
    return map_non_secure(cpu, alloc, realm, ipa, ns_pa)[0]


def map_non_secure(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, ipa: int, ns_pa: int) -> tuple[bool, int]:
    """map_unprotected, also saying how many RTTs it created (the run loop counts them per realm).

    Returns:
        (map_unprotected's answer, the number of RTTs this call created).
    """
    if ipa % GRANULE or not realm.par_size <= ipa < realm.ipa_size:
        raise ValueError(f"map_unprotected(ipa={ipa:#x}): expected a 4 KiB aligned IPA in the unprotected range "
                         f"[{realm.par_size:#x}, {realm.ipa_size:#x})")
    if ns_pa % GRANULE:
        raise ValueError(f"map_unprotected(ns_pa={ns_pa:#x}): expected a 4 KiB aligned PA")
    desc = ns_pa | NS_MAP_ATTRS
    made = 0
    x0 = cpu.smc(MAP_UNPROTECTED, realm.rd, ipa, PAGE_LEVEL, desc)[0]
    if status(x0) == ERROR_RTT and index(x0) < PAGE_LEVEL:
        made = create_rtt_levels(cpu, alloc, realm, ipa, index(x0), PAGE_LEVEL)
        x0 = cpu.smc(MAP_UNPROTECTED, realm.rd, ipa, PAGE_LEVEL, desc)[0]
    if x0 == SUCCESS:
        return True, made
    if status(x0) == ERROR_RTT:
        return False, made
    raise HostError(MAP_UNPROTECTED, (realm.rd, ipa, PAGE_LEVEL, desc), x0,
                    "a valid level-3 mapping request either maps or finds the entry in use")


# -- host boot (once per process and machine) ---------------------------------------------------------

_features: dict[str, int] = {}


def host_features(cpu: "Cpu") -> int:
    """RMI_VERSION(1.0) and RMI_FEATURES(0), once per machine in this process (KVM's boot
    probe); the register is platform data and never changes, so the cache cannot go stale."""
    name = cpu.machine.name
    if name not in _features:
        x0 = cpu.smc(VERSION, RMI_ABI_VERSION)[0]
        if x0 != SUCCESS:
            raise HostError(VERSION, (RMI_ABI_VERSION,), x0, "this host speaks RMI 1.0 only")
        x0, reg = cpu.smc(FEATURES, 0)[:2]
        if x0 != SUCCESS:
            raise HostError(FEATURES, (0,), x0, "RMI_FEATURES always succeeds")
        _features[name] = reg
    return _features[name]
