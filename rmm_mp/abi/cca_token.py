"""Arm CCA attestation token facts (DEN0137 A7.2; CCA platform profile; rsi-attest.md section 4).

The CCA token is a CBOR tag 399 (RMM 1.0) around a map {44234: platform token, 44241: realm
token}, each a tagged COSE_Sign1 in a byte string; newer producers use tag 907 with each value a
[263, bstr] pair. Claim keys and the strings the tokens carry are listed here once.
"""

from __future__ import annotations

from typing import Final

TAG_CCA_TOKEN: Final = 399
TAG_CCA_TOKEN_CMW: Final = 907
TAG_COSE_SIGN1: Final = 18
CMW_CONTENT_FORMAT_EAT: Final = 263
KEY_PLATFORM_TOKEN: Final = 44234
KEY_REALM_TOKEN: Final = 44241

COSE_ALG_ES256: Final = -7
COSE_ALG_ES384: Final = -35
COSE_ALG_ES512: Final = -36

# Realm claims, in the order TF-RMM rel0 writes them.
REALM_CHALLENGE: Final = 10
REALM_PERSONALIZATION_VALUE: Final = 44235
REALM_PUBLIC_KEY: Final = 44237
REALM_HASH_ALGO_ID: Final = 44236
REALM_PUBLIC_KEY_HASH_ALGO_ID: Final = 44240
REALM_PROFILE: Final = 265
REALM_INITIAL_MEASUREMENT: Final = 44238
REALM_EXTENSIBLE_MEASUREMENTS: Final = 44239
REALM_CLAIM_ORDER: Final = (REALM_CHALLENGE, REALM_PERSONALIZATION_VALUE, REALM_PUBLIC_KEY, REALM_HASH_ALGO_ID,
                            REALM_PUBLIC_KEY_HASH_ALGO_ID, REALM_PROFILE, REALM_INITIAL_MEASUREMENT,
                            REALM_EXTENSIBLE_MEASUREMENTS)
REALM_PROFILE_1_0: Final = "tag:arm.com,2023:realm#1.0.0"

# Platform claims.
PLATFORM_PROFILE: Final = 265
PLATFORM_CHALLENGE: Final = 10
PLATFORM_IMPLEMENTATION_ID: Final = 2396
PLATFORM_INSTANCE_ID: Final = 256
PLATFORM_CONFIG: Final = 2401
PLATFORM_LIFECYCLE: Final = 2395
PLATFORM_SW_COMPONENTS: Final = 2399
PLATFORM_VERIFICATION_SERVICE: Final = 2400
PLATFORM_HASH_ALGO_ID: Final = 2402
PLATFORM_PROFILE_1_0: Final = "tag:arm.com,2023:cca_platform#1.0.0"
PLATFORM_PROFILE_LEGACY: Final = "http://arm.com/CCA-SSD/1.0.0"
SW_MEASUREMENT_TYPE, SW_MEASUREMENT_VALUE, SW_VERSION, SW_SIGNER_ID, SW_MEASUREMENT_DESCRIPTION = 1, 2, 4, 5, 6

# COSE_Key (RFC 9053) fields of the RAK claim: {1: 2 (EC2), -1: 2 (P-384), -2: x, -3: y}.
COSE_KEY_KTY, COSE_KEY_CRV, COSE_KEY_X, COSE_KEY_Y = 1, -1, -2, -3
COSE_KTY_EC2, COSE_CRV_P256, COSE_CRV_P384 = 2, 1, 2

HASH_ALGO_NAMES: Final = {0: "sha-256", 1: "sha-512"}
"""RsiHashAlgorithm -> the IANA name claim 44236 carries."""

TOKEN_BUFFER_SIZE: Final = 4096
"""What RSI_ATTESTATION_TOKEN_INIT reports as the token's upper bound (TF-RMM: one page)."""

LIFECYCLE_RANGES: Final = {
    "unknown": (0x0000, 0x00FF), "assembly-and-test": (0x1000, 0x10FF), "rot-provisioning": (0x2000, 0x20FF),
    "secured": (0x3000, 0x30FF), "non-cca-platform-debug": (0x4000, 0x40FF),
    "recoverable-cca-platform-debug": (0x5000, 0x50FF), "decommissioned": (0x6000, 0x60FF),
}
