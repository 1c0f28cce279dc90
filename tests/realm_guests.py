"""Realms that run a guest program, driven through SMC calls only (a test helper, not a test file).

A Guest is a realm built by the KVM-like host (rmm_mp.host) whose image is an assembled guest
program loaded, measured, at CODE (the start of its RAM), with REC 0 entering there. The test then
plays the host: it enters RECs with RMI_REC_ENTER and reads the RmiRecExit back, and reads the
RMM's own records white-box for its assertions (the REC's saved registers, the RD's measurements).

    with Guest.build(machine, '''
            mov x0, =RSI_VERSION        // every RSI and PSCI FID is predefined (PRELUDE)
            mov x1, =0x10000
            smc #0
            hvc #0
        ''') as g:
        x0, ex = g.enter()              # X0 of REC_ENTER, RmiRecExit as a dict
        assert g.gpr(0) == 0

``g.changes(action)`` names the granules in a realm state that ``action`` (an entry, an RMI
call) changed: 'rec0', 'rd', 'rec0.aux0', or the state and PA of any other ('data 0x...';
``g.page(ipa)`` names the DATA page at an IPA) - a call's footprint.

Every enter() writes RmiRecEnter into a zeroed run page (the exit half may be filled with a byte
pattern first, to see which exit fields the RMM writes). Leaving the ``with`` block tears the
realm down (unless the block raised) and frees the host's pages.

Pieces of guest programs shared by the attestation tests: ``init_code`` (RSI_ATTESTATION_TOKEN_INIT),
``extend_code`` (RSI_MEASUREMENT_EXTEND) and ``copy_loop`` (the CONTINUE loop copying a token out).
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Sequence

from footprint import realm_snapshot
from rmm_mp import Machine
from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT
from rmm_mp.guest.assembler import assemble
from rmm_mp.host import HostRealm, NsAllocator, RealmSpec, create_realm, destroy_realm, fault_in, map_unprotected
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.realm_desc import Rd
from rmm_mp.rmm.rec_desc import Rec

F = RmiFid
GRANULE = 4096
CODE = 0x8000_0000
"""IPA of the guest image: the first byte of the realm's RAM, and REC 0's entry point."""
RAM_SIZE = 4 << 20
"""Default RAM: [CODE, CODE + 4 MiB), RIPAS RAM; pages beyond the image are unassigned until faulted in."""
IPA_WIDTH = 40
UNPROTECTED = 1 << (IPA_WIDTH - 1)
"""The lowest unprotected IPA of a default Guest (the top IPA bit)."""
EMPTY_IPA = 0x1000_0000
"""A protected IPA outside the RAM of a default Guest: RIPAS EMPTY, never mapped."""

X4 = 0x4444_0000_0000_0004
"""The sentinel smc_call puts in X4, to see what a call does to a register it does not use."""


def smc_call(fid: int, *args: object) -> str:
    """A guest program: X4 = the sentinel X4, X1.. = args, X0 = fid; `call: smc #0`; then
    `done: wfi` in a loop."""
    lines = [f"mov x4, ={X4}"] + [f"mov x{n}, ={a}" for n, a in enumerate(args, start=1)]
    return "\n".join(lines + [f"mov x0, ={fid}", "call: smc #0", "done: wfi", "b done"])


PRELUDE = "\n".join(f".equ {fid.name}, {int(fid):#x}" for fid in (*RsiFid, *PsciFid))
"""Names for every RSI and PSCI function ID, usable in guest programs (`mov x0, =RSI_HOST_CALL`)."""


HOST_CALL_THEN_OFF = """
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
    .align 256
hostcall:
    .zero 256
"""
"""The end of a guest program (after PRELUDE): RSI_HOST_CALL with X1 as the code before it left it
(the `hostcall` structure's address), then SYSTEM_OFF; the 256-byte aligned `hostcall` structure."""


REPORT_TAIL = """
report:                             // REPORT(x19, x20), SYSTEM_OFF
    adr x1, hostcall
    mov x2, #3
    strh x2, [x1]
    str x19, [x1, #8]
    str x20, [x1, #16]""" + HOST_CALL_THEN_OFF
"""A `report` routine for guest programs (after PRELUDE): REPORT host call (imm 3) with code X19
and detail X20 in its RsiHostCall (workload/programs.py's protocol), then SYSTEM_OFF."""


def failing_guest(code: int, detail: int = 0) -> str:
    """A standalone guest program (for a workload's .s file) that REPORTs failure ``code`` with
    ``detail``, then SYSTEM_OFF."""
    return f"""{PRELUDE}
start:
    mov x19, #{code}
    mov x20, #{detail}
    b report
{REPORT_TAIL}"""


def init_code(challenge: bytes) -> str:
    """Guest code: RSI_ATTESTATION_TOKEN_INIT with the 64-byte ``challenge`` in X1..X8
    (little-endian words). Its outputs are left in X0 and X1."""
    regs = "\n".join(f"mov x{i + 1}, ={w}" for i, w in enumerate(struct.unpack("<8Q", challenge)))
    return f"{regs}\nmov x0, =RSI_ATTESTATION_TOKEN_INIT\nsmc #0\n"


def extend_code(rem: int, value: bytes, size: int | None = None) -> str:
    """Guest code: RSI_MEASUREMENT_EXTEND of REM ``rem`` with ``value`` (zero padded to 64 bytes)
    in X3..X10 and X2 = ``size`` (default: len(value); a size below the value's length leaves
    its remaining bytes in the registers, as the ACS's calls do). X0 is left in X0."""
    words = struct.unpack("<8Q", value.ljust(64, b"\0"))
    regs = "\n".join(f"mov x{3 + i}, ={w}" for i, w in enumerate(words))
    length = len(value) if size is None else size
    return f"mov x1, #{rem}\nmov x2, #{length}\n{regs}\nmov x0, =RSI_MEASUREMENT_EXTEND\nsmc #0\n"


def copy_loop(name: str, buf: int, chunk: int, log: int = 0) -> str:
    """Guest code: RSI_ATTESTATION_TOKEN_CONTINUE from IPA ``buf`` on, X3 = min(chunk, room
    left in the granule), until X0 is not RSI_INCOMPLETE (the spec's A7.2.2 loop; with chunk
    4096 it is also the ACS's: size = PAGE_SIZE - offset, offset += X1); x25 ends at buf +
    bytes written. ``name`` is the loop's label (labels ``name``_sized and ``name``_call too).
    With ``log``, each call's X0 and X1 are stored there (16 bytes a call). Uses x0..x3 and
    x25..x27 only: what must survive a call lives above X16, since an RSI command returns
    X1..X16 as outputs or 0 (B1.2)."""
    store = "str x0, [x27]\n    str x1, [x27, #8]\n    add x27, x27, #16" if log else ""
    return f"""
    mov x25, ={buf}
    mov x26, ={chunk}
    mov x27, ={log}
{name}:
    and x1, x25, #-4096
    and x2, x25, #4095
    mov x3, #4096
    sub x3, x3, x2
    cmp x3, x26
    b.ls {name}_sized
    mov x3, x26
{name}_sized:
    mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE
{name}_call:
    smc #0
    {store}
    add x25, x25, x1
    cmp x0, #3
    b.eq {name}
"""


class Guest:
    """A realm running an assembled program, entered from one host CPU (see the module docstring)."""

    def __init__(self, machine: Machine, alloc: NsAllocator, realm: HostRealm, cpu: int, program: str,
                 base: int = CODE) -> None:
        self.machine = machine
        self.base = base
        self.alloc = alloc
        self.realm = realm
        self.cpu = machine.cpu(cpu)
        self.program = program
        self.run = alloc.alloc()
        self.ns_pages: list[int] = []
        self._labels: dict[str, int] = {}

    @classmethod
    def build(cls, machine: Machine, program: str, *, num_recs: int = 1, hash_algo: int = 0, rpv: bytes = b"",
              ram_size: int = RAM_SIZE, gprs: Sequence[int] = (), cpu: int = 0, ipa_width: int = IPA_WIDTH,
              base: int = CODE) -> "Guest":
        """Assemble ``program`` (after PRELUDE) at ``base`` (CODE unless given: the start of the
        realm's RAM) and build an active realm of ``ipa_width`` bits around it."""
        image = assemble(PRELUDE + "\n" + program, base=base)
        alloc = NsAllocator(machine, cpu)
        spec = RealmSpec(ipa_width=ipa_width, ram_base=base, ram_size=ram_size, hash_algo=hash_algo, rpv=rpv,
                         num_recs=num_recs, image=image, gprs=tuple(gprs))
        return cls(machine, alloc, create_realm(machine.cpu(cpu), alloc, spec), cpu, program, base)

    def label(self, name: str) -> int:
        """IPA of label ``name`` in the program (found by assembling it again with `.quad name` appended)."""
        if name not in self._labels:
            image = assemble(PRELUDE + "\n" + self.program + f"\n.quad {name}", base=self.base)
            self._labels[name] = int.from_bytes(image[-8:], "little")
        return self._labels[name]

    # -- running ---------------------------------------------------------------------------------

    def enter(self, flags: int = 0, gprs: Sequence[int] = (), *, rec: int = 0, cpu: int | None = None,
              gicv3_hcr: int = 0, gicv3_lrs: Sequence[int] = (), exit_fill: int = 0) -> tuple[int, dict[str, Any]]:
        """RMI_REC_ENTER of REC ``rec`` on CPU ``cpu`` (default: the Guest's); returns (X0, exit fields).

        The run page is zeroed, RmiRecEnter written into it, and the exit half filled with the
        byte ``exit_fill``; the exit fields are read back whatever X0 is.
        """
        enter = RMI_REC_ENTER.pack(flags=flags, gprs=list(gprs), gicv3_hcr=gicv3_hcr, gicv3_lrs=list(gicv3_lrs))
        self.machine.ns_write(self.run, bytes(enter) + bytes([exit_fill]) * (GRANULE - REC_EXIT_OFFSET))
        host = self.cpu if cpu is None else self.machine.cpu(cpu)
        x0 = host.smc(F.RMI_REC_ENTER, self.realm.recs[rec].rec, self.run)[0]
        return x0, RMI_REC_EXIT.unpack(self.machine.ns_read(self.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))

    def smc(self, fid: int, *args: int) -> tuple[int, int, int, int, int]:
        """An RMI call from the Guest's host CPU."""
        return self.cpu.smc(fid, *args)

    # -- the host's stage-2 work -----------------------------------------------------------------

    def fault_in(self, ipa: int) -> int:
        """Back the protected page at ``ipa`` (DATA_CREATE_UNKNOWN, RTTs as needed); its PA."""
        pa = fault_in(self.cpu, self.alloc, self.realm, ipa & ~(GRANULE - 1))
        assert pa is not None, f"fault_in({ipa:#x}): the page was already mapped"
        return pa

    def destroy_page(self, ipa: int) -> None:
        """Fault ``ipa`` in, then DATA_DESTROY it: the active realm's page becomes DESTROYED
        (its granule undelegated and given back to the allocator)."""
        pa = self.fault_in(ipa)
        x0, data_pa = self.smc(F.RMI_DATA_DESTROY, self.realm.rd, ipa)[:2]
        assert x0 == 0 and data_pa == pa, (x0, data_pa, pa)
        assert self.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == 0
        self.alloc.free(pa)

    def map_unprotected(self, ipa: int, data: bytes = b"") -> int:
        """Map a new NS page holding ``data`` (zero padded) at the unprotected ``ipa``; its PA."""
        pa = self.alloc.alloc()
        self.machine.ns_write(pa, data.ljust(GRANULE, b"\0"))
        self.ns_pages.append(pa)
        assert map_unprotected(self.cpu, self.alloc, self.realm, ipa, pa), f"{ipa:#x} was already mapped"
        return pa

    # -- white-box views for assertions ----------------------------------------------------------

    def rec_pa(self, n: int = 0) -> int:
        return self.realm.recs[n].rec

    def rec(self, n: int = 0) -> Rec:
        """REC ``n`` as the RMM keeps it (valid while the REC is not running)."""
        return Rec(self.machine.memory, self._idx(self.realm.recs[n].rec))

    def gpr(self, reg: int, rec: int = 0) -> int:
        return self.rec(rec).gpr(reg)

    def pc(self, rec: int = 0) -> int:
        return self.rec(rec).pc

    @property
    def rd(self) -> Rd:
        return Rd(self.machine.memory, self._idx(self.realm.rd))

    @property
    def rim(self) -> bytes:
        """The RIM, as long as the realm's hash (32 or 64 bytes)."""
        return self.rd.measurement(0)[:32 if self.realm.hash_algo == 0 else 64]

    def peek(self, ipa: int, size: int) -> bytes:
        """Bytes of realm memory at a protected ``ipa`` backed by a level-3 DATA page (the RTT
        entry is read with RMI_RTT_READ_ENTRY, the DATA granule white-box)."""
        offset = self.page_pa(ipa) - self.machine.dram_base + (ipa & (GRANULE - 1))
        return bytes(self.machine.memory.buf[offset:offset + size])

    def page_pa(self, ipa: int) -> int:
        """PA of the DATA granule mapped at the protected ``ipa`` (a level-3 page)."""
        x0, level, state, desc, _ = self.smc(F.RMI_RTT_READ_ENTRY, self.realm.rd, ipa & ~(GRANULE - 1), 3)
        assert (x0, level, state) == (0, 3, 1), f"{ipa:#x} is not an assigned level-3 page: {x0, level, state}"
        return s2tt.output_address(desc, 3)

    def granule_name(self, pa: int) -> str:
        """'rd', 'rec<n>', 'rec<n>.aux<i>', else the granule's state and PA ('data 0x...')."""
        names = {self.realm.rd: "rd"}
        for n, rec in enumerate(self.realm.recs):
            names[rec.rec] = f"rec{n}"
            names.update({aux: f"rec{n}.aux{i}" for i, aux in enumerate(rec.aux)})
        if pa in names:
            return names[pa]
        return f"{GranuleState.name(self.machine.granule_table(0).state(self._idx(pa))).lower()} {pa:#x}"

    def page(self, ipa: int) -> str:
        """`granule_name` of the DATA granule at ``ipa``."""
        return self.granule_name(self.page_pa(ipa))

    def changes(self, action: Callable[[], object]) -> set[str]:
        """Names (`granule_name`) of the granules ``action`` changes: state, refcount, lock, PAS or
        contents of any granule in a realm state (footprint.realm_snapshot before and after). NS
        granules' contents are not compared: the run page's exit half is the host's."""
        before = realm_snapshot(self.machine)
        action()
        return {self.granule_name(pa) for pa in before.changed(realm_snapshot(self.machine))}

    def _idx(self, pa: int) -> int:
        return (pa - self.machine.dram_base) // self.machine.granule_size

    # -- teardown --------------------------------------------------------------------------------

    def destroy(self) -> None:
        """Tear the realm down (KVM's v12 order) and free the run page and the mapped NS pages."""
        destroy_realm(self.cpu, self.alloc, self.realm)
        for pa in (self.run, *self.ns_pages):
            self.alloc.free(pa)
        self.ns_pages.clear()

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.destroy()
