"""Copying host structures in and out of Non-secure memory (params, run and source pages).

TF-RMM checks that the page is NS without its lock, then copies; if EL3 moved the page to
another PAS in between, the copy takes a granule protection fault and the command fails with
RMI_ERROR_INPUT. Here the copy goes through hw.memory.NsAccess, which checks the GPT and copies
while holding the granule's lock: the same outcomes, with no window.

Locking rule 8: a handler makes these copies while it holds no other granule lock. The page's
lock is the same lock other commands take when the page is DELEGATED (lock_two(page, RD) for
RTT_CREATE, DATA_CREATE ...), and those hold it while they wait for an RD; a copy made while
holding an RD could wait for them in turn. The one exception, read_held_ns (and unpack_held_ns,
which reads a structure's fields in place), copies a page the handler locked itself as an
external granule, in address order with its others (rule 2): DATA_CREATE's source, REC_ENTER's
run page. REC_ENTER writes its exit into the run page, found NS by its lock_two earlier, through
NsAccess.pack_values by the page's granule index: NsAccess's own lock and check, taken while the
handler holds no other lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rmm_mp.hw.faults import GranuleProtectionFault
from rmm_mp.hw.gpt import Pas
from rmm_mp.hw.granule import GRANULE_SIZE
from rmm_mp.rmm.granule_state import GranuleState

_NS_PAS = Pas.NS     # read once: an enum class attribute costs a hook call per read (hw/memory.py)

if TYPE_CHECKING:
    from rmm_mp.abi.structs import Layout
    from rmm_mp.hw.granule import Granule
    from rmm_mp.rmm.cpu import RmmCpu


def read_ns(rmm: "RmmCpu", pa: int, size: int) -> bytes | None:
    """``size`` bytes from the NS granule at ``pa``; None if pa is not a granule-aligned DRAM
    address in the Non-secure PAS (params_align, params_bound, params_pas)."""
    if rmm.granules.find(pa) < 0:
        return None
    try:
        return rmm.ns.read(pa, size)
    except GranuleProtectionFault:
        return None


def read_held_ns(rmm: "RmmCpu", page: "Granule", size: int = GRANULE_SIZE) -> bytes | None:
    """The first ``size`` bytes of granule ``page``, which the caller locked as NS (find_lock,
    lock_two, lock_sorted) and holds; None if EL3 has it outside the Non-secure PAS (a Secure
    page reads as NS in the granule table), where the copy would take a granule protection
    fault. No lock is taken: the caller's lock is the one NsAccess would take, and while it is
    held no DELEGATE and no host or RMM copy can touch the page."""
    if rmm.gpt.pas(page.idx) != _NS_PAS:
        return None
    return rmm.memory.read(page.addr, size)


def unpack_held_ns(rmm: "RmmCpu", page: "Granule", layout: "Layout") -> dict[str, Any] | None:
    """``layout.unpack`` of the start of granule ``page``, held as read_held_ns's is, read in
    place: the values are copied straight out of DRAM, with no bytes copy of the page made first
    (REC_ENTER's enter half, on every entry: about 3,000 instructions fewer than unpacking a
    read_held_ns copy). None if EL3 has the page outside the Non-secure PAS."""
    if rmm.gpt.pas(page.idx) != _NS_PAS:
        return None
    return layout.unpack(rmm.memory.buf, page.idx << 12)


def still_ns(rmm: "RmmCpu", pa: int) -> bool:
    """Whether the page at ``pa``, copied earlier with read_ns, is still in the NS PAS: one load.

    A copy is made before the handler takes its locks (rule 8), so another CPU may have
    delegated the page since, even as one of this command's own granules. A handler asks this
    once it holds its locks, at the command's moment: still NS there, the page was NS when the
    command took effect; otherwise no serial order explains a success (DELEGATE first fails the
    page's pas check, the command first fails on its own granule's state), so the command fails
    the pas check then, as TF-RMM's late copy would fault."""
    idx = rmm.granules.find(pa)
    return idx >= 0 and rmm.granules.racy_state(idx) == GranuleState.NS

