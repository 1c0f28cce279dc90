"""Spec facts as code: function IDs, status codes, enumerations and byte layouts.

This package owns the numbers that the RMM specification (DEN0137 1.0-rel0), SMCCC and the
RMM-EL3 interface fix. It must not import anything else of rmm_mp: every other layer depends
on it, and it depends on nothing.
"""

from rmm_mp.abi.smccc import SMC_UNKNOWN, SMCCC_SVE_HINT, strip_sve_hint, to_u64
from rmm_mp.abi.rmi import (
    RMI_ABI_VERSION,
    RmiFid,
    RmiStatus,
    FeatureRegister0,
    pack_return,
    unpack_return,
)
from rmm_mp.abi.el3 import RmmEl3Fid, RmmEl3Status

__all__ = [
    "SMC_UNKNOWN",
    "SMCCC_SVE_HINT",
    "strip_sve_hint",
    "to_u64",
    "RMI_ABI_VERSION",
    "RmiFid",
    "RmiStatus",
    "FeatureRegister0",
    "pack_return",
    "unpack_return",
    "RmmEl3Fid",
    "RmmEl3Status",
]
