"""The RMM's attestation material and the per-REC state of a realm token in progress.

Material (A7.2; TF-RMM's attestation init at boot): the RAK private key from EL3
(RMM_ATTEST_GET_REALM_KEY), its COSE_Key (realm claim 44237), and the platform token EL3 returns
for the challenge SHA-256(COSE_Key) (RMM_ATTEST_GET_PLAT_TOKEN, hunk by hunk through the shared
buffer). It never changes, so each process obtains it once, on first use.

Token state lives in the REC's first two auxiliary granules, so a token started on one CPU can
be finished on another (the REC carries it). The first holds:

    0x000  phase        u64  0 none, 1 signing, 2 copying out
    0x008  steps        u64  signing steps done (SIGNING_STEPS in all)
    0x010  length       u64  bytes of the finished CCA token
    0x018  copied       u64  bytes already copied to the realm
    0x020  hash_algo    u64  the realm's algorithm when INIT ran
    0x040  challenge    64 bytes
    0x080  RIM, REM1..4 5 x 64 bytes, as INIT saw them
    0x200  RPV          64 bytes

and the second the CCA token itself: a whole granule, the TOKEN_BUFFER_SIZE bytes INIT promises
the realm. A token that would be longer cannot be returned: CONTINUE fails with
RSI_ERROR_UNKNOWN (B5.3.1.2 `unknown`) and leaves the state as it was. The signed token is
stored only once the realm's buffer has been walked and found writable, so a CONTINUE that
fails on its buffer (RIPAS EMPTY) or exits for it (not mapped) keeps nothing of its signing.

Signing is done in SIGNING_STEPS steps of STEP_COST guest-instruction equivalents each, taken
from the REC's time slice: when the slice runs out in the middle, the REC exits with IRQ and
RSI_ATTESTATION_TOKEN_CONTINUE resumes later, on any CPU (TF-RMM signs with mbedTLS's
interruptible ECDSA, checking for a pending IRQ between steps). The signature itself is computed
at the last step with RFC 6979 nonces, so an interrupted token is byte for byte the same as an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from rmm_mp.abi import cca_token as T
from rmm_mp.abi.el3 import RmmEl3Fid, RmmEl3Status
from rmm_mp.attest.cose import sign_cose_sign1
from rmm_mp.attest.envelope import encode_cca_token
from rmm_mp.attest.rak import encode_cose_key, private_key_from_scalar
from rmm_mp.attest.realm_claims import encode_realm_claims
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.rmm.measurement import HASH_SIZES

if TYPE_CHECKING:
    from rmm_mp.hw.memory import PhysicalMemory
    from rmm_mp.rmm.cpu import RmmCpu

SIGNING_STEPS = 4
STEP_COST = 2_000
PHASE_NONE, PHASE_SIGNING, PHASE_COPYING = 0, 1, 2
TOKEN_CAPACITY = T.TOKEN_BUFFER_SIZE
"""Bytes of CCA token a REC can hold: its second aux granule, all of what INIT promises."""
_HEAD = struct.Struct("<5Q")
_OK = int(RmmEl3Status.E_RMM_OK)


@dataclass(frozen=True)
class Material:
    rak: ec.EllipticCurvePrivateKey
    rak_claim: bytes
    platform_token: bytes


def material(rmm: "RmmCpu") -> Material:
    """The RAK, its claim and the platform token, fetched from EL3 on this CPU's first token.

    Kept on the RmmCpu, which lives exactly as long as the CPU binding to one machine: a cache
    keyed by anything longer-lived could hand one platform's keys to another machine's realm.
    """
    found = rmm.attest_material
    if found is None:
        found = rmm.attest_material = _fetch(rmm)
    assert isinstance(found, Material)
    return found


def _fetch(rmm: "RmmCpu") -> Material:
    el3 = rmm.el3
    status, size, _ = el3.smc_from_realm(RmmEl3Fid.RMM_ATTEST_GET_REALM_KEY, 0, 4096, 0)
    if status != _OK or el3.attest is None:
        raise RmmInternalError(f"EL3 refused RMM_ATTEST_GET_REALM_KEY: {status}")
    rak = private_key_from_scalar(bytes(el3.attest.shared_buffer[:size]))
    claim = encode_cose_key(rak.public_key())
    challenge = hashlib.sha256(claim).digest()
    el3.attest.shared_buffer[:len(challenge)] = challenge
    token = b""
    status, hunk, remaining = el3.smc_from_realm(RmmEl3Fid.RMM_ATTEST_GET_PLAT_TOKEN, 0, 4096, len(challenge))
    while status == _OK:
        token += bytes(el3.attest.shared_buffer[:hunk])
        if not remaining:
            return Material(rak, claim, token)
        status, hunk, remaining = el3.smc_from_realm(RmmEl3Fid.RMM_ATTEST_GET_PLAT_TOKEN, 0, 4096, 0)
    raise RmmInternalError(f"EL3 refused RMM_ATTEST_GET_PLAT_TOKEN: {status}")


class TokenState:
    """Typed access to the token state in a REC's first two auxiliary granules."""

    __slots__ = ("memory", "offset", "token_offset")

    def __init__(self, memory: "PhysicalMemory", aux0_pa: int, aux1_pa: int) -> None:
        self.memory = memory
        self.offset = aux0_pa - memory.base
        self.token_offset = aux1_pa - memory.base

    def head(self) -> tuple[int, int, int, int, int]:
        """(phase, steps, length, copied, hash_algo)."""
        return _HEAD.unpack_from(self.memory.buf, self.offset)

    def set_head(self, phase: int, steps: int, length: int, copied: int, hash_algo: int) -> None:
        _HEAD.pack_into(self.memory.buf, self.offset, phase, steps, length, copied, hash_algo)

    def start(self, challenge: bytes, measurements: list[bytes], rpv: bytes, hash_algo: int) -> None:
        buf, base = self.memory.buf, self.offset
        buf[base + 0x40:base + 0x80] = challenge
        for slot, value in enumerate(measurements):
            buf[base + 0x80 + 64 * slot:base + 0xC0 + 64 * slot] = value
        buf[base + 0x200:base + 0x240] = rpv
        self.set_head(PHASE_SIGNING, 0, 0, 0, hash_algo)

    def sign(self, mat: Material) -> bytes | None:
        """The CCA token for the saved inputs (the realm token signed), or None when it is
        longer than TOKEN_CAPACITY; stores nothing (store() does, once the buffer is known good)."""
        buf, base = self.memory.buf, self.offset
        algo = self.head()[4]
        size = HASH_SIZES[algo]
        measurements = [bytes(buf[base + 0x80 + 64 * i:base + 0x80 + 64 * i + size]) for i in range(5)]
        payload = encode_realm_claims(
            challenge=bytes(buf[base + 0x40:base + 0x80]), personalization_value=bytes(buf[base + 0x200:base + 0x240]),
            public_key=mat.rak_claim, hash_algo_id=T.HASH_ALGO_NAMES[algo], initial_measurement=measurements[0],
            extensible_measurements=measurements[1:])
        token = encode_cca_token(mat.platform_token, sign_cose_sign1(payload, mat.rak, T.COSE_ALG_ES384))
        if len(token) > TOKEN_CAPACITY:
            return None     # a platform token this large: more than INIT told the realm to expect
        return token

    def store(self, token: bytes) -> None:
        """Keep a signed CCA token (at most TOKEN_CAPACITY bytes) in the second aux granule."""
        self.memory.buf[self.token_offset:self.token_offset + len(token)] = token

    def token(self, start: int, size: int) -> bytes:
        begin = self.token_offset + start
        return bytes(self.memory.buf[begin:begin + size])
