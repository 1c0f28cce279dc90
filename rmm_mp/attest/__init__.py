"""Arm CCA attestation tokens: produce them as TF-RMM does, and verify them.

Producing (what the RMM's RSI_ATTESTATION_TOKEN_* handlers need; rsi-attest.md 4, 7):

    rak = private_key_from_scalar(scalar_from_el3)            # 48-byte P-384 scalar
    rak_claim = encode_cose_key(rak.public_key())              # 107 bytes; sha-256 of it is
                                                               # the platform token's challenge
    payload = encode_realm_claims(challenge=..., personalization_value=..., public_key=rak_claim,
                                  hash_algo_id="sha-256", initial_measurement=..., extensible_measurements=[...])
    token = encode_cca_token(platform_token, sign_cose_sign1(payload, rak))

Verifying: `verify_token(token, key_file_bytes, expected_challenge=..., expected_rim=...)`
returns a VerificationResult of named checks; `inspect_token` decodes without verifying.
`rmm_mp.attest.cli.attest_group` is the `rmm-mp attest` command group.

Layering: this package stands on rmm_mp.abi and third-party libraries (cbor2, cryptography)
only, so EL3, the RMM and the CLI can all use it.
"""

from rmm_mp.attest.cose import Sign1, decode_sign1, sign_cose_sign1, verify_sign1
from rmm_mp.attest.digest import HASH_ALGORITHMS, digest
from rmm_mp.attest.envelope import CcaToken, decode_cca_token, encode_cca_token
from rmm_mp.attest.errors import AttestError, PlatformKeyError, SignatureError, TokenFormatError, UnsupportedCryptoError
from rmm_mp.attest.keys import TrustAnchor, TrustAnchorFile, load_trust_anchors, read_trust_anchors
from rmm_mp.attest.platform_claims import check_platform_claims, encode_platform_claims, platform_claims_json
from rmm_mp.attest.rak import encode_cose_key, private_key_from_scalar, rak_public_key, raw_point
from rmm_mp.attest.realm_claims import check_realm_claims, encode_realm_claims, realm_claims_json
from rmm_mp.attest.verify import Check, VerificationResult, inspect_token, verify_token

__all__ = [
    "Sign1",
    "decode_sign1",
    "sign_cose_sign1",
    "verify_sign1",
    "HASH_ALGORITHMS",
    "digest",
    "CcaToken",
    "decode_cca_token",
    "encode_cca_token",
    "AttestError",
    "PlatformKeyError",
    "SignatureError",
    "TokenFormatError",
    "UnsupportedCryptoError",
    "TrustAnchor",
    "TrustAnchorFile",
    "load_trust_anchors",
    "read_trust_anchors",
    "check_platform_claims",
    "encode_platform_claims",
    "platform_claims_json",
    "encode_cose_key",
    "private_key_from_scalar",
    "rak_public_key",
    "raw_point",
    "check_realm_claims",
    "encode_realm_claims",
    "realm_claims_json",
    "Check",
    "VerificationResult",
    "inspect_token",
    "verify_token",
]
