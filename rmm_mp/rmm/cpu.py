"""The RMM as it runs on one CPU: the objects its handlers use, and its RMI entry point.

Everything here is per CPU and per process; the state it works on lives in shared memory
(granule table, DRAM). The handlers receive this object as ``rmm``.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from rmm_mp.abi.rmi import FeatureRegister0
from rmm_mp.el3.monitor import Monitor, Result, RmmEntry
from rmm_mp.hw.control import Control
from rmm_mp.hw.gpt import Gpt
from rmm_mp.hw.granule import GranuleTable
from rmm_mp.hw.tlb import Tlb
from rmm_mp.hw.memory import NsAccess, PhysicalMemory
from rmm_mp.hw.platform import Platform
from rmm_mp.rmm.dispatch import dispatch, log

if TYPE_CHECKING:
    from rmm_mp.rmm.realm_call import RealmCall
    from rmm_mp.rmm.realm_desc import Rd
    from rmm_mp.rmm.rec_desc import Rec
    from rmm_mp.rmm.stage2 import Stage2Bus


class RmmCpu:
    """Per-CPU RMM context: what a handler may use."""

    __slots__ = ("cpu", "granules", "memory", "ns", "el3", "features0", "num_lrs", "control", "log", "pa_bits",
                 "vmid_bits", "platform", "gpt", "tlb", "time_slice", "attest_material", "buses",
                 "realm_call", "recs", "rds")

    def __init__(self, cpu: int, granules: GranuleTable, memory: PhysicalMemory, ns: NsAccess,
                 el3: Monitor, features0: int, control: Control, platform: Platform, gpt: Gpt, tlb: Tlb,
                 time_slice: int) -> None:
        self.cpu = cpu
        self.gpt = gpt
        self.tlb = tlb
        self.time_slice = time_slice
        self.attest_material: object = None
        """rmm.attestation.Material once this CPU's RMM has fetched it from EL3 (first token)."""
        self.buses: dict[int, Stage2Bus] = {}
        """realm_run's Stage2Bus of each S2Ctx this CPU has run a REC of, by id(ctx): a bus holds
        nothing but what its CPU and ctx give it, so one serves every entry; and it holds its ctx,
        so an id found here is that of a live ctx, never one reused by another object."""
        self.realm_call: RealmCall | None = None
        """realm_run's RealmCall (with its GuestState) for the REC this CPU runs, made at the first
        entry and refilled whole by every entry, field by field: making both costs more than
        setting them. A CPU runs one REC at a time, and nothing keeps them past the entry
        (handlers use them while called), so no entry sees another's values."""
        self.recs: dict[int, Rec] = {}
        self.rds: dict[int, Rd] = {}
        """REC_ENTER's Rec of each REC granule index, and Rd of each RD PA, it entered (rmi_rec.py,
        bounded): a Rec or Rd holds nothing but its memory and index, so one serves every entry of
        its granule."""
        self.platform = platform
        self.pa_bits = platform.pa_bits
        self.vmid_bits = platform.features.vmid_bits
        self.granules = granules
        self.memory = memory
        self.ns = ns
        self.el3 = el3
        self.features0 = features0
        self.num_lrs = FeatureRegister0.field(features0, "GICV3_NUM_LRS")
        """GICV3_NUM_LRS, which every REC entry and exit needs: read by name once, not per entry."""
        self.control = control
        self.log = log.isEnabledFor(logging.DEBUG)

    def handle_rmi(self, fid: int, x1: int, x2: int, x3: int, x4: int, x5: int, x6: int) -> Result:
        """The RMM's RMI entry point; returns REQ_COMPLETE's X1..X5."""
        return dispatch(self, fid, x1, x2, x3, x4, x5, x6)

    def rmi_entry(self) -> RmmEntry:
        """What EL3 enters (Monitor.rmm): handle_rmi without its Python frame, dispatch bound to
        this CPU by functools.partial, which EL3 calls on every RMI call."""
        return functools.partial(dispatch, self)
