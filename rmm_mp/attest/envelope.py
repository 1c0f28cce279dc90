"""The outer CCA token: the collection that carries the platform and realm tokens.

RMM 1.0 (TF-RMM rel0) emits tag 399 around {44234: bstr platform token, 44241: bstr realm
token}, in that key order (DEN0137 1.0-rel0 A7.2.1; rsi-attest.md 4.1). Newer producers
(TF-RMM HEAD, veraison's encoder) emit tag 907 with each value a CMW pair [263, bstr]. Both
are decoded; only 399 is produced, because that is what RMM 1.0 returns to a realm. Anything
else (another tag, extra or missing entries, entries that are not byte strings, such as
veraison's testBadUnwrappedTokens.cbor) is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from rmm_mp.abi.cca_token import (CMW_CONTENT_FORMAT_EAT, KEY_PLATFORM_TOKEN, KEY_REALM_TOKEN, TAG_CCA_TOKEN,
                                  TAG_CCA_TOKEN_CMW)
from rmm_mp.attest._claim_rules import describe, shown
from rmm_mp.attest._cbor import diag, is_array, is_map, loads_exact
from rmm_mp.attest.errors import TokenFormatError
from rmm_mp.printable import abbreviated

_PARTS = {KEY_PLATFORM_TOKEN: "platform token", KEY_REALM_TOKEN: "realm token"}


@dataclass(frozen=True)
class CcaToken:
    """The two signed tokens of a CCA token, as the byte strings that carried them."""

    tag: int
    platform_token: bytes
    realm_token: bytes


def decode_cca_token(data: bytes) -> CcaToken:
    """Split a CCA token (tag 399 or 907) into its platform and realm tokens.

    Raises:
        TokenFormatError: not one CBOR item, not tag 399/907, not a map of exactly keys
            44234 and 44241, or an entry that is not a byte string (399) / [263, bstr] (907).
    """
    item = loads_exact(data, "CCA token", marker=True)
    if not isinstance(item, cbor2.CBORTag) or item.tag not in (TAG_CCA_TOKEN, TAG_CCA_TOKEN_CMW):
        found = f"tag {item.tag}" if isinstance(item, cbor2.CBORTag) else f"untagged {describe(item)}"
        raise TokenFormatError(f"CCA token: expected CBOR tag {TAG_CCA_TOKEN} (RMM 1.0) or {TAG_CCA_TOKEN_CMW} "
                               f"(CMW collection), found {found}")
    # type(), not set equality alone: 44234.0 == 44234 in Python, but a float is no CBOR integer key.
    if not is_map(item.value) or set(item.value) != set(_PARTS) or any(type(k) is not int for k in item.value):
        if not is_map(item.value):
            keys = describe(item.value)
        elif not item.value:
            keys = "an empty map"
        else:
            # h'00', not Python's bytes repr; a key of 30,000 characters, or a list of
            # thousands, is shown by its start and its length.
            keys = "keys " + abbreviated(", ".join(abbreviated(key) for key in sorted(map(diag, item.value))))
        raise TokenFormatError(f"CCA token: tag {item.tag} must hold a map with exactly the keys "
                               f"{KEY_PLATFORM_TOKEN} (platform) and {KEY_REALM_TOKEN} (realm), found {keys}")
    parts = {key: _entry(item.tag, item.value[key], name) for key, name in _PARTS.items()}
    return CcaToken(item.tag, parts[KEY_PLATFORM_TOKEN], parts[KEY_REALM_TOKEN])


def _entry(tag: int, value: Any, name: str) -> bytes:
    if tag == TAG_CCA_TOKEN:
        if not isinstance(value, bytes):
            raise TokenFormatError(f"CCA token: the {name} entry of a tag {tag} token must be a byte string "
                                   f"wrapping a COSE_Sign1, found {describe(value)}")
        return value
    if (not is_array(value) or len(value) != 2 or type(value[0]) is not int or value[0] != CMW_CONTENT_FORMAT_EAT
            or not isinstance(value[1], bytes)):
        found = (f"[{shown(value[0])}, {describe(value[1])}]" if is_array(value) and len(value) == 2
                 else describe(value))
        raise TokenFormatError(f"CCA token: the {name} entry of a tag {tag} token must be "
                               f"[{CMW_CONTENT_FORMAT_EAT}, byte string wrapping a COSE_Sign1], found {found}")
    return value[1]


def encode_cca_token(platform_token: bytes, realm_token: bytes) -> bytes:
    """The RMM 1.0 CCA token: tag 399, map {44234: platform token, 44241: realm token} in that
    order, as TF-RMM rel0 writes it (rsi-attest.md 4.1, 7.8).

    Raises:
        TypeError: a token is not bytes.
    """
    for name, token in (("platform_token", platform_token), ("realm_token", realm_token)):
        if not isinstance(token, (bytes, bytearray)):
            raise TypeError(f"{name} must be the COSE_Sign1 bytes, got {type(token).__name__}")
    return cbor2.dumps(cbor2.CBORTag(TAG_CCA_TOKEN, {KEY_PLATFORM_TOKEN: bytes(platform_token),
                                                     KEY_REALM_TOKEN: bytes(realm_token)}))
