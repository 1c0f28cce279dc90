"""The RMM-EL3 interface (TF-A rmm-el3-comms-spec, interface 0.x used by TF-RMM rel0).

Function IDs the RMM uses to call EL3 from the Realm world, and EL3's return codes.
"""

from __future__ import annotations

import enum


class RmmEl3Fid(enum.IntEnum):
    """SMC64 function IDs of RMM -> EL3 services (0xC40001B0..0xC40001CF) and REQ_COMPLETE."""

    RMM_RMI_REQ_COMPLETE = 0xC400_018F
    """Ends an RMI call: X1..X5 carry the RMI result X0..X4 back to the Non-secure world."""
    RMM_GTSI_DELEGATE = 0xC400_01B0
    RMM_GTSI_UNDELEGATE = 0xC400_01B1
    RMM_ATTEST_GET_REALM_KEY = 0xC400_01B2
    RMM_ATTEST_GET_PLAT_TOKEN = 0xC400_01B3
    RMM_EL3_FEATURES = 0xC400_01B4
    RMM_BOOT_COMPLETE = 0xC400_01CF


class RmmEl3Status(enum.IntEnum):
    """Signed return codes of RMM-EL3 services, in X0."""

    E_RMM_OK = 0
    E_RMM_UNK = -1
    E_RMM_BAD_ADDR = -2
    E_RMM_BAD_PAS = -3
    E_RMM_NOMEM = -4
    E_RMM_INVAL = -5
    E_RMM_AGAIN = -6
