"""Fixtures for the attestation tests: the TF-A FVP sample RAK and platform token, and a
realm-claims builder.

TF-A hands this RAK to TF-RMM on FVP/QEMU and returns this platform token (its challenge is
SHA-256 of the RAK's COSE_Key), so a token made from the two verifies end to end with
cca_platform.pub (tests/vectors/ccatoken/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from rmm_mp.attest import encode_cose_key, encode_realm_claims, private_key_from_scalar

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ccatoken"
SAMPLE = VECTORS / "tf-a-fvp-sample"
CPAK_PUB = VECTORS / "veraison-ccatoken" / "realm" / "testvectors" / "tf-rmm" / "cca_platform.pub"


@pytest.fixture(scope="session")
def sample_rak() -> ec.EllipticCurvePrivateKey:
    return private_key_from_scalar(bytes.fromhex((SAMPLE / "fvp_sample_rak_p384_private_scalar.hex").read_text()))


@pytest.fixture(scope="session")
def sample_platform_token() -> bytes:
    return (SAMPLE / "fvp_sample_platform_token.cbor").read_bytes()


@pytest.fixture(scope="session")
def cpak_pub() -> bytes:
    return CPAK_PUB.read_bytes()


@pytest.fixture
def realm_claims(sample_rak: ec.EllipticCurvePrivateKey) -> Callable[..., bytes]:
    """encode_realm_claims with RMM 1.0 defaults (sample RAK, SHA-256, distinct byte patterns),
    any argument overridable."""
    def build(**overrides: Any) -> bytes:
        args: dict[str, Any] = dict(challenge=bytes(range(64)), personalization_value=b"\x5a" * 64,
                                    public_key=encode_cose_key(sample_rak.public_key()), hash_algo_id="sha-256",
                                    initial_measurement=b"\x11" * 32,
                                    extensible_measurements=[bytes([i]) * 32 for i in (0x21, 0x22, 0x23, 0x24)])
        args.update(overrides)
        return encode_realm_claims(**args)
    return build
