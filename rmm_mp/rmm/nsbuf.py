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
run page. pack_page_ns writes a structure into a page the command found NS earlier (REC_ENTER's
run page, at the exit), by its granule index, locking it as NsAccess would.
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


def pack_page_ns(rmm: "RmmCpu", idx: int, offset: int, layout: "Layout", values: dict[str, Any]) -> bool:
    """Write ``layout`` packed with ``values`` at ``offset`` into granule ``idx`` (``offset`` +
    layout.size <= GRANULE_SIZE), which this command found to be an NS DRAM granule earlier and
    holds no lock on now (REC_ENTER's run page, found by lock_two, written at the exit): the same
    lock and GPT check as NsAccess.write's one-granule path, without finding the granule from its
    address again, and packed straight into the page (Layout.pack_values_into), with no bytes
    object made and copied (one REC exit each). False, with nothing written, if EL3 has the page
    outside the Non-secure PAS now."""
    granules = rmm.granules
    granules.lock(idx)      # NsAccess.write's lock: rule 8, no other lock is held
    try:
        if rmm.gpt.pas(idx) != _NS_PAS:
            return False
        layout.pack_values_into(rmm.memory.buf, (idx << 12) + offset, values)
    finally:
        granules.unlock(idx)
    return True
