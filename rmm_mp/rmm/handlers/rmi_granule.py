"""RMI_GRANULE_DELEGATE and RMI_GRANULE_UNDELEGATE (DEN0137 B4.3.5, B4.3.6).

Lock sequence (docs/locking.md): the target granule only, held across the EL3 call, as in
TF-RMM rel0. Failure conditions, in TF-RMM's order (all RMI_ERROR_INPUT):
gran_align, gran_bound (find), gran_state (checked under the lock), gran_gpt (EL3's answer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.abi.el3 import RmmEl3Fid, RmmEl3Status
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState

if TYPE_CHECKING:
    from rmm_mp.rmm.cpu import RmmCpu

_GTSI_DELEGATE = int(RmmEl3Fid.RMM_GTSI_DELEGATE)
_GTSI_UNDELEGATE = int(RmmEl3Fid.RMM_GTSI_UNDELEGATE)
_E_RMM_OK = int(RmmEl3Status.E_RMM_OK)

LOCK_SEQUENCES = {
    "RMI_GRANULE_DELEGATE": ("the granule (NS), held across EL3's GPT change and the zeroing",
                             "one lock; EL3's service takes none"),
    "RMI_GRANULE_UNDELEGATE": ("the granule (DELEGATED), held across the wipe and EL3's GPT change",
                               "one lock; EL3's service takes none"),
}
FAILURE_CONDITIONS = {
    "RMI_GRANULE_DELEGATE": ("gran_align", "gran_bound", "gran_state", "gran_gpt"),
    "RMI_GRANULE_UNDELEGATE": ("gran_align", "gran_bound", "gran_state"),
}


def rmi_granule_delegate(rmm: "RmmCpu", addr: int) -> None:
    """NS -> DELEGATED: EL3 moves the granule to the Realm PAS, then the RMM zeroes it."""
    g = rmm.granules.find_lock(addr, GranuleState.NS)
    if g is None:
        raise RmiError.input()
    if rmm.el3.smc_from_realm(_GTSI_DELEGATE, addr)[0] != _E_RMM_OK:
        g.unlock()
        raise RmiError.input()
    rmm.memory.zero(g.idx)
    g.unlock_transition(GranuleState.DELEGATED)


def rmi_granule_undelegate(rmm: "RmmCpu", addr: int) -> None:
    """DELEGATED -> NS: the contents are wiped, then EL3 returns the granule to the NS PAS.

    An unlocked DELEGATED granule is already zero (locking rule 7); the wipe the spec requires
    (B4.3.6.3 gran_content) is repeated so that no path can hand realm bytes to the host.
    EL3 refusing is not a status: TF-RMM panics, and so do we (RmmInternalError).
    """
    g = rmm.granules.find_lock(addr, GranuleState.DELEGATED)
    if g is None:
        raise RmiError.input()
    rmm.memory.zero(g.idx)
    status = rmm.el3.smc_from_realm(_GTSI_UNDELEGATE, addr)[0]
    if status != _E_RMM_OK:
        g.unlock()
        raise RmmInternalError(f"EL3 refused to undelegate DELEGATED granule {addr:#x}: {RmmEl3Status(status).name}")
    g.unlock_transition(GranuleState.NS)
