"""Tokens the running model makes, read the way a relying party that never saw rmm_mp would.

The tests elsewhere check the RMM's tokens with rmm_mp.attest.verify_token, which shares its CBOR,
COSE and claim code with the encoder: a mistake common to both would pass there. Here a workload
of attest realms (SHA-256 and SHA-512, token copied out in 7-byte CONTINUE chunks, so at many
offsets in the granule) runs on the `host` and `fvp` platforms, and each token it saved is checked
with cbor2 and cryptography alone, from DEN0137 1.0-rel0 A7.2.3: the collection (tag 399, keys
44234 and 44241 holding byte strings), both COSE_Sign1 (tag 18, ES384 protected header, the
signature over a Sig_structure built here), the realm claims and their sizes for the realm's hash
algorithm, the platform claims, the binding (platform challenge = SHA-256 of the RAK claim's
bytes, as claim 44240 says), and the challenge the workload gave the realm.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

SEED = 3
WORKLOAD = f"""
description = "attest realms for an independent token check"
cpus = 1
seconds = 1
seed = {SEED}
activities = {{ attest = 2, run = 3 }}

[[realm]]
name = "s256"
guest = "attest"
ram = "4M"
rpv = "0x01020304"
constants = {{ CHUNK = 7, EXTEND_REM = 3 }}
lifecycle = true

[[realm]]
name = "s512"
guest = "attest"
ram = "4M"
hash = "sha512"
constants = {{ CHUNK = 7, EXTEND_REM = 1, EXTEND_SIZE = 5 }}
lifecycle = true
"""
EXTEND = b"attest guest: extends a REM with this before it asks for a token"
"""The attest guest's default EXTEND0..7 (workloads/guests/attest.s)."""


def _rmm_mp(*args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "rmm_mp", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def _sign1(data: bytes, key: ec.EllipticCurvePublicKey) -> dict[object, object]:
    """The claims of a tagged COSE_Sign1 after checking its ES384 signature by hand (RFC 9052 4.4)."""
    item = cbor2.loads(data)
    assert isinstance(item, cbor2.CBORTag) and item.tag == 18
    protected, unprotected, payload, signature = item.value
    assert cbor2.loads(protected) == {1: -35} and unprotected == {}
    assert len(signature) == 96
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    der = encode_dss_signature(int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big"))
    key.verify(der, to_be_signed, ec.ECDSA(hashes.SHA384()))     # raises InvalidSignature
    claims = cbor2.loads(payload)
    assert isinstance(claims, dict)
    return claims


@pytest.mark.parametrize("platform", ["host", "fvp"])
def test_saved_tokens_check_out_with_cbor2_and_cryptography_alone(platform: str, tmp_path: Path) -> None:
    (tmp_path / "w.toml").write_text(WORKLOAD)
    _rmm_mp("run", "w.toml", "--platform", platform, "--iterations", "80", "--save-tokens", "tokens",
           "--no-latency", cwd=tmp_path)
    pem = _rmm_mp("platform", "show", platform, "--public-key", cwd=tmp_path).encode()
    platform_key = serialization.load_pem_public_key(pem)
    assert isinstance(platform_key, ec.EllipticCurvePublicKey)
    files = sorted((tmp_path / "tokens").glob("*.cbor"))
    assert {f.name.split("-")[0] for f in files} == {"s256", "s512"}, files
    for f in files:
        name, index, generation = f.stem.split("-")
        size = 64 if name == "s512" else 32
        outer = cbor2.loads(f.read_bytes())
        assert isinstance(outer, cbor2.CBORTag) and outer.tag == 399
        assert isinstance(outer.value, dict) and sorted(outer.value) == [44234, 44241]
        assert all(isinstance(v, bytes) for v in outer.value.values())
        plat = _sign1(outer.value[44234], platform_key)
        realm = _sign1(outer.value[44241], _rak(outer.value[44241]))
        assert sorted(realm) == [10, 265, 44235, 44236, 44237, 44238, 44239, 44240], f
        challenge = hashlib.sha512(f"rmm-mp workload seed {SEED} realm {name}[{index}]#{int(generation)}".encode())
        assert realm[10] == challenge.digest()
        assert realm[265] == "tag:arm.com,2023:realm#1.0.0"
        assert realm[44235] == (bytes.fromhex("01020304") if name == "s256" else b"").ljust(64, b"\0")
        assert realm[44236] == ("sha-512" if name == "s512" else "sha-256") and realm[44240] == "sha-256"
        assert len(realm[44238]) == size and any(realm[44238])
        h = hashlib.sha512 if name == "s512" else hashlib.sha256
        extended = h(bytes(size) + (EXTEND[:5] if name == "s512" else EXTEND)).digest()
        rems = [bytes(size)] * 4
        rems[0 if name == "s512" else 2] = extended
        assert realm[44239] == rems
        assert plat[265] == "tag:arm.com,2023:cca_platform#1.0.0"
        assert plat[10] == hashlib.sha256(realm[44237]).digest()
        assert len(plat[2396]) == 32 and len(plat[256]) == 33 and plat[256][0] == 0x01
        assert isinstance(plat[2401], bytes) and 0x3000 <= plat[2395] <= 0x30FF and isinstance(plat[2402], str)
        assert plat[2399] and all(len(c[2]) in (32, 48, 64) and len(c[5]) in (32, 48, 64) for c in plat[2399])


def _rak(realm_token: bytes) -> ec.EllipticCurvePublicKey:
    """The RAK of realm claim 44237: a P-384 EC2 COSE_Key (RFC 9053 7.1.1), read before the
    signature it checks."""
    claims = cbor2.loads(cbor2.loads(realm_token).value[2])
    key = cbor2.loads(claims[44237])
    assert (key[1], key[-1], len(key[-2]), len(key[-3])) == (2, 2, 48, 48)
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), b"\x04" + key[-2] + key[-3])
