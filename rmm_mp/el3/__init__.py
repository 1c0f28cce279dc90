"""EL3 (the root monitor): world switch, SMC routing, GPT transitions, attestation keys.

EL3 never touches RMM state: it sees the RMM only as an entry point that takes an RMI call and
returns the arguments of RMM_RMI_REQ_COMPLETE.
"""

from rmm_mp.el3.attest import AttestationKeys, AttestationService
from rmm_mp.el3.monitor import Monitor, RmmEntry
from rmm_mp.el3.gtsi import Gtsi

__all__ = ["Monitor", "RmmEntry", "Gtsi", "AttestationKeys", "AttestationService"]
