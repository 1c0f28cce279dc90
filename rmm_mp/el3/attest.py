"""EL3's attestation services: the Realm Attestation Key and the CCA platform token.

The RMM gets both from EL3 through the RMM-EL3 interface (rsi-attest.md 5.2):
RMM_ATTEST_GET_REALM_KEY writes the RAK's private scalar (48 bytes, P-384) into the shared buffer,
and RMM_ATTEST_GET_PLAT_TOKEN returns the platform token in hunks through the same buffer, the
first call carrying the challenge (SHA-256 of the RAK's COSE_Key: the binding of A7.2).

Where the keys come from depends on the platform file's [attestation] table:
- keys = "tf-a-fvp-sample": TF-A's FVP sample RAK and its hard-coded platform token
  (rmm_mp/data/tf-a-fvp-sample/, see PROVENANCE.md). TF-A returns that token whatever the
  challenge, and so does this model; its nonce matches the sample RAK, so tokens verify end to end
  with cca_platform.pub.
- keys = "seeds": the RAK and the platform key (CPAK) are derived from the seed strings
  (HKDF-SHA-384 to a P-384 scalar), and the platform token is built and signed here
  (deterministic ECDSA, so every run of a platform yields the same token for the same challenge).

The shared buffer is one page per CPU held by EL3 (not simulated DRAM: the RMM's own memory is
not modelled). This module owns key material. It must not touch RMM state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rmm_mp import __version__
from rmm_mp.abi import cca_token as T
from rmm_mp.abi.el3 import RmmEl3Status
from rmm_mp.attest.cose import sign_cose_sign1
from rmm_mp.attest.platform_claims import encode_platform_claims
from rmm_mp.hw.platform import Platform

SHARED_BUFFER_SIZE = 4096
CURVE_P384 = 0
_P384_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
LIFECYCLE_SECURED = 0x3003


def data_dir() -> Path:
    """rmm_mp/data in the installed package or the source tree."""
    return Path(str(resources.files("rmm_mp") / "data"))


def derive_p384_scalar(seed: str, label: str) -> bytes:
    """A P-384 private scalar (48 bytes, big-endian) derived from a platform seed string."""
    okm = HKDF(algorithm=hashes.SHA384(), length=64, salt=b"rmm-mp attestation keys", info=label.encode()).derive(
        seed.encode())
    scalar = int.from_bytes(okm, "big") % (_P384_ORDER - 1) + 1
    return scalar.to_bytes(48, "big")


@dataclass
class AttestationKeys:
    """The attestation material of one platform (immutable: cached per process)."""

    platform: Platform

    @cached_property
    def rak_scalar(self) -> bytes:
        if self.platform.attestation.keys == "tf-a-fvp-sample":
            text = (data_dir() / "tf-a-fvp-sample" / "fvp_sample_rak_p384_private_scalar.hex").read_text()
            return bytes.fromhex("".join(text.split()))
        return derive_p384_scalar(self.platform.attestation.rak_seed, "realm attestation key")

    @cached_property
    def platform_private_key(self) -> ec.EllipticCurvePrivateKey | None:
        """The CPAK of a seeded platform (the FVP sample's private key is not shipped)."""
        if self.platform.attestation.keys != "seeds":
            return None
        scalar = derive_p384_scalar(self.platform.attestation.platform_key_seed, "cca platform attestation key")
        return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP384R1())

    def platform_public_key_pem(self) -> bytes:
        """The key that verifies this platform's tokens, as an SPKI PEM."""
        if self.platform_private_key is None:
            return (data_dir() / "tf-a-fvp-sample" / "cca_platform.pub").read_bytes()
        return self.platform_private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def platform_token(self, challenge: bytes) -> bytes:
        """The CCA platform token for ``challenge`` (the hash of the RAK's COSE_Key)."""
        key = self.platform_private_key
        if key is None:
            return (data_dir() / "tf-a-fvp-sample" / "fvp_sample_platform_token.cbor").read_bytes()
        return sign_cose_sign1(self._platform_claims(key, challenge), key, T.COSE_ALG_ES384)

    def _platform_claims(self, key: ec.EllipticCurvePrivateKey, challenge: bytes) -> bytes:
        """Claims of a seeded platform: identities derived from its name and key, secured
        lifecycle, one software component (the RMM, measured by its version)."""
        public = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
        name = self.platform.name
        component: dict[int, bytes | str] = {T.SW_MEASUREMENT_TYPE: "RMM",
                     T.SW_MEASUREMENT_VALUE: hashlib.sha256(f"rmm-mp {__version__} RMM".encode()).digest(),
                     T.SW_VERSION: __version__, T.SW_SIGNER_ID: hashlib.sha256(public).digest(),
                     T.SW_MEASUREMENT_DESCRIPTION: "sha-256"}
        return encode_platform_claims(
            challenge=challenge, implementation_id=hashlib.sha256(f"rmm-mp platform {name}".encode()).digest(),
            instance_id=b"\x01" + hashlib.sha256(public).digest(), config=f"rmm-mp {name}".encode(),
            lifecycle=LIFECYCLE_SECURED, sw_components=[component], hash_algo_id="sha-256",
            verification_service="https://rmm-mp.invalid/verify")


_OK, _BAD_ADDR, _INVAL = int(RmmEl3Status.E_RMM_OK), int(RmmEl3Status.E_RMM_BAD_ADDR), int(RmmEl3Status.E_RMM_INVAL)
_UNK = int(RmmEl3Status.E_RMM_UNK)


def _buffer_status(offset: int, size: int) -> int:
    """TF-A's buffer rule for both services: the buffer [offset, offset + size) must start and
    end inside the shared buffer (a size of 0 ends before it starts)."""
    if not 0 <= offset < SHARED_BUFFER_SIZE:
        return _BAD_ADDR
    if not 0 <= offset + size - 1 < SHARED_BUFFER_SIZE:
        return _INVAL
    return _OK


class AttestationService:
    """EL3's half of RMM_ATTEST_GET_REALM_KEY and RMM_ATTEST_GET_PLAT_TOKEN on one CPU."""

    def __init__(self, keys: AttestationKeys) -> None:
        self.keys = keys
        self.shared_buffer = bytearray(SHARED_BUFFER_SIZE)
        self._pending: bytes = b""

    def get_realm_key(self, offset: int, size: int, curve: int) -> tuple[int, int]:
        """Write the RAK scalar at ``offset`` of the shared buffer; returns (status, key size).

        As TF-A's rmmd: the buffer first (E_RMM_BAD_ADDR for a start outside the shared buffer,
        E_RMM_INVAL for an end past it), then the curve (E_RMM_INVAL), then the platform's
        refusal of a buffer too small for the key (E_RMM_UNK)."""
        status = _buffer_status(offset, size)
        if status != _OK:
            return status, 0
        if curve != CURVE_P384:
            return _INVAL, 0
        scalar = self.keys.rak_scalar
        if size < len(scalar):
            return _UNK, 0
        self.shared_buffer[offset:offset + len(scalar)] = scalar
        return _OK, len(scalar)

    def get_platform_token(self, offset: int, size: int, challenge_size: int) -> tuple[int, int, int]:
        """One hunk of the platform token into the shared buffer; (status, hunk size, remaining).

        A non-zero ``challenge_size`` (32, 48 or 64) starts over with the challenge read from the
        buffer at ``offset``, which must hold all of it; 0 continues a retrieval in progress.
        The buffer is checked first, as for get_realm_key.
        """
        status = _buffer_status(offset, size)
        if status != _OK:
            return status, 0, 0
        if challenge_size not in (0, 32, 48, 64):
            return _INVAL, 0, 0
        if offset + challenge_size > SHARED_BUFFER_SIZE:
            return _INVAL, 0, 0     # a slice would come back short: a challenge nobody gave
        if challenge_size:
            challenge = bytes(self.shared_buffer[offset:offset + challenge_size])
            self._pending = self.keys.platform_token(challenge)
        elif not self._pending:
            return _INVAL, 0, 0
        hunk, self._pending = self._pending[:size], self._pending[size:]
        self.shared_buffer[offset:offset + len(hunk)] = hunk
        return _OK, len(hunk), len(self._pending)
