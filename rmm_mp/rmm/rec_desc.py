"""The Realm Execution Context (REC) as it is kept inside its own 4 KiB granule.

Layout (little-endian offsets in the REC granule):

    0x000  owner_rd       u64  PA of the RD of the realm this REC belongs to
    0x008  rec_idx        u64
    0x010  mpidr          u64  RmiRecMpidr as given at REC_CREATE
    0x018  runnable       u64  0 or 1
    0x020  psci_pending   u64  0, or the PSCI function ID awaiting RMI_PSCI_COMPLETE
    0x028  host_call      u64  1 while a host call awaits completion on the next REC_ENTER
    0x030  ripas_base, ripas_top, ripas_addr, ripas_value, ripas_change_destroyed   u64 each
    0x058  last_esr, last_far, last_hpfar   u64 each: the last exit's abort syndrome
    0x070  num_aux        u64
    0x078  aux[16]        u64 each: PAs of the auxiliary granules
    0x100  gprs X0..X30   u64 each
    0x1F8  pc             u64
    0x200  pstate         u64
    0x208  ipa_width, rtt_level_start, rtt_num_start, rtt_base, hash_algo: a copy of the
           realm's translation parameters taken at REC_CREATE, so that a running REC needs no
           RD lock to translate addresses
    0x300  guest system registers vbar, elr, esr, far     u64 each
    0x320  the last data abort at an unprotected IPA: its access syndrome (the ISS bits ISV,
           SAS, SF, SRT and WnR as ESR_EL2 had them; WnR alone for an ldp/stp), its IPA, 0
    0x338  host_call_ipa  u64  the RsiHostCall structure of the pending host call
    0x340  host_call_pa   u64  where the RMM found it when the realm made the call (locked walk)
    0x348  host_call_gen  u64  the realm's TLB generation read before that walk (realm_call.py:
                               the completion may reuse the PA while the generation is unchanged)
    0x350  reserved

Who may touch it: the holder of the REC lock while the REC refcount is 0, or the CPU holding the
running reference (refcount 1). Never both.
"""

from __future__ import annotations

import struct

from rmm_mp.hw.memory import PhysicalMemory
from rmm_mp.rmm.memo import BoundedMemo
from rmm_mp.rmm.s2tt import S2Ctx

GPRS = 31
AUX_MAX = 16
PSTATE_EL1H_DAIF_MASKED = 0x3C5
"""PSTATE of a REC at creation or CPU_ON: EL1h with D, A, I and F masked."""

_HEAD = struct.Struct("<QQQQQQQQQQQQQQ")   # 0x000 .. 0x070
_AUX = struct.Struct("<Q16Q")              # 0x070 .. 0x0F8
_GPRS = struct.Struct("<31Q")              # 0x100 .. 0x1F8
_PC_PSTATE = struct.Struct("<QQ")          # 0x1F8 .. 0x208
_REALM = struct.Struct("<QqQQQ")           # 0x208 .. 0x230
_CONTEXT = struct.Struct("<33Q")           # 0x100 .. 0x208: gprs, pc, pstate
_RUN_STATE = struct.Struct("<14Q144x33QQqQQ216x4Q24x3Q")   # 0x000 .. 0x350 (run_state): H_* and R_* below

OFF_OWNER, OFF_IDX, OFF_MPIDR, OFF_RUNNABLE, OFF_PSCI, OFF_HOST_CALL = 0x000, 0x008, 0x010, 0x018, 0x020, 0x028
OFF_RIPAS_BASE, OFF_RIPAS_TOP, OFF_RIPAS_ADDR, OFF_RIPAS_VALUE, OFF_RIPAS_DESTROYED = 0x030, 0x038, 0x040, 0x048, 0x050
OFF_LAST_ESR, OFF_LAST_FAR, OFF_LAST_HPFAR = 0x058, 0x060, 0x068
OFF_NUM_AUX = 0x070
OFF_GPRS = 0x100
OFF_PC = 0x1F8
OFF_PSTATE = 0x200
OFF_REALM = 0x208
OFF_SYSREGS = 0x300
OFF_ABORT = 0x320
OFF_HOST_CALL_IPA = 0x338
SYSREGS = 4
_Q = struct.Struct("<Q")
_SYSREGS = struct.Struct("<4Q")
_ABORT = struct.Struct("<2Q")
_HOST_CALL = struct.Struct("<3Q")          # 0x338 .. 0x350
_RIPAS = struct.Struct("<5Q")
_LAST_EXIT = struct.Struct("<3Q")

# Positions in run_state(): the words 0x000 .. 0x070 (the head of the layout), then X0 .. X30,
# pc, pstate, the stage-2 parameters (4 values), the system registers, and the pending host
# call's IPA, PA and generation (R_HOST_CALL .. R_HOST_CALL + 2).
H_OWNER, H_IDX, H_MPIDR, H_RUNNABLE, H_PSCI, H_HOST_CALL = 0, 1, 2, 3, 4, 5
H_RIPAS_BASE, H_RIPAS_TOP, H_RIPAS_ADDR, H_RIPAS_VALUE, H_RIPAS_DESTROYED = 6, 7, 8, 9, 10
H_LAST_ESR, H_LAST_FAR, H_LAST_HPFAR = 11, 12, 13
R_GPRS, R_PC, R_PSTATE, R_S2, R_SYSREGS, R_HOST_CALL = 14, 45, 46, 47, 51, 55

_S2CTX_CACHE_MAX = 1024
_s2ctx_cache: BoundedMemo[tuple[int, ...], S2Ctx] = BoundedMemo(lambda key: S2Ctx(*key), _S2CTX_CACHE_MAX)
"""(ipa_width, level, num, base) -> its S2Ctx: S2Ctx is immutable, and making one costs more
than finding it."""
s2ctx_memo = _s2ctx_cache
"""The same memo, for run_rec to subscript with run_state()[R_S2:R_S2 + 4] (Rec.s2ctx_of without
its call, once per REC entry)."""


class Rec:
    """Typed access to one REC granule (see the module docstring for who may use it)."""

    __slots__ = ("memory", "idx", "offset")

    def __init__(self, memory: PhysicalMemory, idx: int) -> None:
        self.memory = memory
        self.idx = idx
        self.offset = idx << 12

    def _get(self, off: int) -> int:
        return _Q.unpack_from(self.memory.buf, self.offset + off)[0]

    def _set(self, off: int, value: int) -> None:
        _Q.pack_into(self.memory.buf, self.offset + off, value)

    def initialise(self, owner_rd: int, rec_idx: int, mpidr: int, runnable: bool, pc: int,
                   gprs: tuple[int, ...], aux: tuple[int, ...], s2: S2Ctx, hash_algo: int) -> None:
        """Write a new REC into a zeroed granule."""
        buf, base = self.memory.buf, self.offset
        _HEAD.pack_into(buf, base, owner_rd, rec_idx, mpidr, int(runnable), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        _AUX.pack_into(buf, base + OFF_NUM_AUX, len(aux), *aux, *([0] * (AUX_MAX - len(aux))))
        _GPRS.pack_into(buf, base + OFF_GPRS, *gprs, *([0] * (GPRS - len(gprs))))
        _PC_PSTATE.pack_into(buf, base + OFF_PC, pc, PSTATE_EL1H_DAIF_MASKED)
        _REALM.pack_into(buf, base + OFF_REALM, s2.ipa_width, s2.start_level, s2.num_roots, s2.rtt_base, hash_algo)

    # REC_ENTER reads these three on every entry: one unpack each, no helper in between.
    owner_rd = property(lambda self: _Q.unpack_from(self.memory.buf, self.offset + OFF_OWNER)[0])
    rec_idx = property(lambda self: self._get(OFF_IDX))
    mpidr = property(lambda self: self._get(OFF_MPIDR))
    runnable = property(lambda self: _Q.unpack_from(self.memory.buf, self.offset + OFF_RUNNABLE)[0] != 0,
                        lambda self, value: self._set(OFF_RUNNABLE, int(value)))
    psci_pending = property(lambda self: _Q.unpack_from(self.memory.buf, self.offset + OFF_PSCI)[0],
                            lambda self, fid: self._set(OFF_PSCI, fid))
    host_call_pending = property(lambda self: self._get(OFF_HOST_CALL) != 0,
                                 lambda self, value: self._set(OFF_HOST_CALL, int(value)))
    pc = property(lambda self: self._get(OFF_PC), lambda self, value: self._set(OFF_PC, value))
    pstate = property(lambda self: self._get(OFF_PSTATE), lambda self, value: self._set(OFF_PSTATE, value))

    def aux(self) -> tuple[int, ...]:
        count, *aux = _AUX.unpack_from(self.memory.buf, self.offset + OFF_NUM_AUX)
        return tuple(aux[:count])

    def gpr(self, n: int) -> int:
        return self._get(OFF_GPRS + 8 * n)

    def set_gpr(self, n: int, value: int) -> None:
        self._set(OFF_GPRS + 8 * n, value)

    def gprs(self) -> tuple[int, ...]:
        return _GPRS.unpack_from(self.memory.buf, self.offset + OFF_GPRS)

    def set_gprs(self, values: tuple[int, ...] | list[int], first: int = 0) -> None:
        """X<first> .. X<first + len(values) - 1>; the other registers keep their values."""
        if first == 0 and len(values) == GPRS:
            _GPRS.pack_into(self.memory.buf, self.offset + OFF_GPRS, *values)
        elif values:
            struct.pack_into(f"<{len(values)}Q", self.memory.buf, self.offset + OFF_GPRS + 8 * first, *values)

    def run_state(self) -> tuple[int, ...]:
        """What REC entry reads, in one unpack: the head (positions H_*), X0..X30 (R_GPRS), pc
        (R_PC), pstate (R_PSTATE), ipa_width, rtt_level_start, rtt_num_start, rtt_base (R_S2;
        s2ctx_of() makes the S2Ctx), the guest system registers (R_SYSREGS) and the pending host
        call's IPA, PA and realm TLB generation (R_HOST_CALL: what a host call's completion needs,
        read here rather than by a second accessor call)."""
        return _RUN_STATE.unpack_from(self.memory.buf, self.offset)

    def save_context(self, gprs: "list[int] | tuple[int, ...]", pc: int, pstate: int,
                     sysregs: "list[int] | tuple[int, ...]", held_gprs: "list[int] | None" = None,
                     held_sysregs: "list[int] | None" = None) -> None:
        """X0 .. X30 (the first 31 of ``gprs``), pc, pstate and the guest system registers, in
        at most two writes (what a REC exit saves).

        ``held_gprs`` / ``held_sysregs``: lists of the same shape as ``gprs`` / ``sysregs`` that
        the REC's words are known to hold (run_rec: the registers as the run read them at entry;
        while a REC runs, nothing but its run writes them). A block equal to its list is not
        written again: packing costs about 150 to 300 instructions a register on CPython 3.11,
        comparing equal lists a few dozen, and a realm often leaves most of its registers as it
        found them (pc and pstate are written whatever)."""
        buf, base = self.memory.buf, self.offset
        if held_gprs is None or gprs != held_gprs:
            _CONTEXT.pack_into(buf, base + OFF_GPRS, *gprs[:GPRS], pc, pstate)
        else:
            _PC_PSTATE.pack_into(buf, base + OFF_PC, pc, pstate)
        if held_sysregs is None or sysregs != held_sysregs:
            _SYSREGS.pack_into(buf, base + OFF_SYSREGS, *sysregs[:SYSREGS])

    def ripas_request(self) -> tuple[int, int, int, int, int]:
        """(base, top, addr, value, change_destroyed) of the pending RIPAS change (all 0 if none)."""
        return _RIPAS.unpack_from(self.memory.buf, self.offset + OFF_RIPAS_BASE)

    def set_ripas_request(self, base: int, top: int, addr: int, value: int, change_destroyed: int) -> None:
        _RIPAS.pack_into(self.memory.buf, self.offset + OFF_RIPAS_BASE, base, top, addr, value, change_destroyed)

    def set_ripas_addr(self, addr: int) -> None:
        self._set(OFF_RIPAS_ADDR, addr)

    def last_exit(self) -> tuple[int, int, int]:
        """(esr, far, hpfar) of the last exit's abort syndrome."""
        return _LAST_EXIT.unpack_from(self.memory.buf, self.offset + OFF_LAST_ESR)

    def set_last_exit(self, esr: int, far: int, hpfar: int) -> None:
        _LAST_EXIT.pack_into(self.memory.buf, self.offset + OFF_LAST_ESR, esr, far, hpfar)

    def pending_abort(self) -> tuple[int, int]:
        """(access syndrome, IPA) of the last data abort at an unprotected IPA (layout above)."""
        return _ABORT.unpack_from(self.memory.buf, self.offset + OFF_ABORT)

    def set_pending_abort(self, iss: int, ipa: int) -> None:
        _ABORT.pack_into(self.memory.buf, self.offset + OFF_ABORT, iss, ipa)

    host_call_ipa = property(lambda self: self._get(OFF_HOST_CALL_IPA),
                             lambda self, ipa: self._set(OFF_HOST_CALL_IPA, ipa))

    def clear_host_call(self) -> None:
        """The pending host call is complete."""
        _Q.pack_into(self.memory.buf, self.offset + OFF_HOST_CALL, 0)

    def set_host_call(self, ipa: int, pa: int, generation: int) -> None:
        """Record a host call: the flag, and where its RsiHostCall is (rsi_host_call)."""
        buf, base = self.memory.buf, self.offset
        _Q.pack_into(buf, base + OFF_HOST_CALL, 1)
        _HOST_CALL.pack_into(buf, base + OFF_HOST_CALL_IPA, ipa, pa, generation)

    def s2ctx(self) -> S2Ctx:
        ipa_width, level, num, base, _ = _REALM.unpack_from(self.memory.buf, self.offset + OFF_REALM)
        return _s2ctx(ipa_width, level, num, base)

    @staticmethod
    def s2ctx_of(run_state: tuple[int, ...]) -> S2Ctx:
        """s2ctx() from a run_state() tuple."""
        return _s2ctx_cache[run_state[R_S2:R_S2 + 4]]     # _s2ctx of them

    @property
    def hash_algo(self) -> int:
        return _REALM.unpack_from(self.memory.buf, self.offset + OFF_REALM)[4]


def _s2ctx(ipa_width: int, level: int, num: int, base: int) -> S2Ctx:
    """The S2Ctx of these values (memoised: _s2ctx_cache)."""
    return _s2ctx_cache[(ipa_width, level, num, base)]
