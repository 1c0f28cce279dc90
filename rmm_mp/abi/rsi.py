"""Realm Services Interface facts (DEN0137 1.0-rel0, chapter B5): function IDs and return codes.

A realm calls these with SMC from EL1; the RMM answers in X0 (and X1.. for outputs).
"""

from __future__ import annotations

import enum

RSI_ABI_VERSION = (1 << 16) | 0
"""RsiInterfaceVersion 1.0."""


class RsiFid(enum.IntEnum):
    """RSI 1.0 function IDs; comments give the inputs (X1..) and outputs (X1..)."""

    RSI_VERSION = 0xC400_0190  # req -> lower, higher
    RSI_FEATURES = 0xC400_0191  # index -> value
    RSI_MEASUREMENT_READ = 0xC400_0192  # index -> value[0..7] (X1..X8)
    RSI_MEASUREMENT_EXTEND = 0xC400_0193  # index, size, value[0..7] (X3..X10) -> -
    RSI_ATTESTATION_TOKEN_INIT = 0xC400_0194  # challenge[0..7] (X1..X8) -> max token size
    RSI_ATTESTATION_TOKEN_CONTINUE = 0xC400_0195  # addr, offset, size -> bytes written
    RSI_REALM_CONFIG = 0xC400_0196  # addr -> -
    RSI_IPA_STATE_SET = 0xC400_0197  # base, top, ripas, flags -> new base, response
    RSI_IPA_STATE_GET = 0xC400_0198  # base, end -> top, ripas
    RSI_HOST_CALL = 0xC400_0199  # addr -> -


class RsiStatus(enum.IntEnum):
    RSI_SUCCESS = 0
    RSI_ERROR_INPUT = 1
    RSI_ERROR_STATE = 2
    RSI_INCOMPLETE = 3
    RSI_ERROR_UNKNOWN = 4


class RsiRipas(enum.IntEnum):
    RSI_EMPTY = 0
    RSI_RAM = 1
    RSI_DESTROYED = 2
    RSI_DEV = 3
    """B5.4.7 (and TF-RMM rel0's RIPAS_DEV): no 1.0 command produces it, and IPA_STATE_SET
    refuses it (ripas_valid allows EMPTY and RAM only)."""


class RsiResponse(enum.IntEnum):
    RSI_ACCEPT = 0
    RSI_REJECT = 1


RSI_CHANGE_DESTROYED = 1
"""RsiRipasChangeFlags bit 0: a RIPAS change may turn DESTROYED entries into the new RIPAS."""

RSI_FID_FIRST, RSI_FID_LAST = 0xC400_0190, 0xC400_01AF
MEASUREMENT_SLOTS = 5
MAX_MEASUREMENT_EXTEND = 64
