"""`rmm-mp attest`: verify or inspect a CCA attestation token from the command line.

rmm_mp.cli imports this module and adds `attest_group` when the command line names `attest`
(its SUBCOMMANDS). The commands parse, call verify.py, print, and choose the exit status; all
logic lives in the package.

A token whose realm side checks out but whose platform signature could not be checked (no
--platform-key) must not look like success: it exits 3, not 0.

The token and key files are read bounded (MAX_FILE, 64 KiB): a larger one is a usage error.
"""

from __future__ import annotations

import json
from typing import Any, Final

import click

from rmm_mp.attest.errors import TokenFormatError
from rmm_mp.attest.platform_claims import SHOWN_FIELD, lifecycle_state
from rmm_mp.attest.realm_claims import CHALLENGE_SIZE, MEASUREMENT_SIZES
from rmm_mp.attest.verify import Check, VerificationResult, inspect_token, verify_token
from rmm_mp.clitypes import Group
from rmm_mp.inputfile import TooLarge, read_at_most
from rmm_mp.printable import basic_string, not_one_printable_line, shown_path
from rmm_mp.words import count

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNVERIFIED: Final = 3
_EXIT_BY_VERDICT: Final = {"ok": EXIT_OK, "failed": EXIT_FAILED, "incomplete": EXIT_UNVERIFIED}
VERIFY_SCHEMA: Final = "rmm-mp-attest-verify/1"
"""`verify --json`'s "schema" value; when its number changes: docs/latency.md, its JSON report section."""
INSPECT_SCHEMA: Final = "rmm-mp-attest-inspect/1"
"""`inspect --json`'s "schema" value; when its number changes: docs/latency.md, its JSON report section."""
_NAME_WIDTH: Final = 32
MAX_FILE: Final = 64 << 10
"""Most bytes a TOKEN or --platform-key file may hold. A CCA token is 1 to 3 KB (this RMM's are
at most the 4,096 bytes of the buffer RSI_ATTESTATION_TOKEN_INIT promises, abi.cca_token
TOKEN_BUFFER_SIZE), a key or trust-anchor list a few hundred bytes to a few KB: 64 KiB leaves
room for tokens of many software components and for a list of keys, while a wrong path (a disk
image, /dev/zero) is refused having read no more than this."""


def _hex_bytes(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
    """click callback: HEX option -> bytes (an optional 0x prefix and spaces are allowed)."""
    if value is None:
        return None
    digits = "".join(value.split()).removeprefix("0x").removeprefix("0X")
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        data = b""
    if not data:
        # the sizes of the option's own value: a RIM's for --expect-rim, not a challenge's
        sizes = ("32, 48 or 64 bytes = 64, 96 or 128 digits for a RIM" if param.name == "expect_rim"
                 else "at most 64 bytes = 128 digits for a challenge")
        what = "is empty" if not digits else "is not a hex byte string"
        raise click.BadParameter(f"{value!r} {what}; expected a non-zero, even number of hex "
                                 f"digits, e.g. 'abab...' ({sizes})")
    return data


def _read_bounded(path: str, what: str, param_hint: str) -> bytes:
    """The bytes of input file ``path`` (``what`` it must be), at most MAX_FILE of them: a file
    that cannot be read or is larger is a usage error naming the file and the bound."""
    try:
        return read_at_most(path, MAX_FILE)
    except OSError as exc:
        raise click.BadParameter(f"{shown_path(path)} cannot be read ({exc.strerror}); expected {what}",
                                 param_hint=param_hint) from None
    except TooLarge as exc:
        raise click.BadParameter(f"{shown_path(path)} has more than {exc.limit:,} bytes; expected {what} of at most "
                                 f"{exc.limit:,} bytes (64 KiB)", param_hint=param_hint) from None


def _read_token(path: str) -> bytes:
    data = _read_bounded(path, "a CCA token", "TOKEN")
    if not data:
        raise click.BadParameter(f"{shown_path(path)} is empty; expected a CCA token (CBOR tag 399 or 907)",
                                 param_hint="TOKEN")
    return data


@click.group("attest", cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def attest_group() -> None:
    """Verify and inspect Arm CCA attestation tokens.

    Reads RMM 1.0 tokens (CBOR tag 399: platform and realm COSE_Sign1 tokens in byte strings)
    and the newer CMW form (tag 907).
    """


@attest_group.command("verify")
@click.argument("token", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--platform-key", type=click.Path(exists=True, dir_okay=False, readable=True), default=None,
              help="Platform key (trust anchor): an EC key on P-256, P-384 or P-521 (of a private "
                   "key only the public half is used) as PEM (public or private), DER, JWK, JWK Set "
                   "(each of its EC keys on those curves is tried; keys of other types or on other "
                   "curves are skipped, as RFC 7517 section 5 advises, and the platform signature "
                   "check names them), veraison trust-anchor list JSON, or a hex EC point. "
                   "A file holding no such key (an RSA key, a P-192 key, a point not on its curve), or "
                   "a list or JWK Set with a broken entry, fails the platform signature check (exit 1), "
                   "naming what it holds. Without it the platform signature is not verified.")
@click.option("--challenge", callback=_hex_bytes, metavar="HEX",
              help="The challenge the realm was given; realm claim 10 must equal it. A shorter one "
                   "than 64 bytes is zero-padded to 64, as RMM spec A7.2.2 has the relying party do "
                   "before the realm passes it on; a longer one is a usage error (no realm challenge "
                   "is longer).")
@click.option("--expect-rim", callback=_hex_bytes, metavar="HEX",
              help="The expected realm initial measurement (32, 48 or 64 bytes, as a RIM is; other "
                   "lengths are a usage error); realm claim 44238 must equal it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of tables.")
@click.pass_context
def verify_command(ctx: click.Context, token: str, platform_key: str | None, challenge: bytes | None,
                   expect_rim: bytes | None, as_json: bool) -> None:
    """Verify TOKEN: claims, platform signature, realm signature (with the RAK of realm claim
    44237) and the binding (platform challenge == hash of the RAK claim).

    \b
    Exit status:
      0  every check passed
      1  a check failed; its reason is printed (and is in --json): a
         --platform-key file that holds no usable key is one, the platform
         signature check failed, not a usage error
      2  usage error: a file is unreadable, TOKEN is not a CCA token, or HEX is
         bad (not hex, or a length no challenge / RIM has)
      3  no check failed, but the platform signature was NOT verified (no
         --platform-key)

    TOKEN and the key file hold at most 64 KiB each (a token is a few KB).

    A WARNING line names what the RMM spec rules out but veraison's verifiers accept (a RIM
    whose length is not the digest length of the realm hash algorithm, claim 44236); it does
    not change the exit status.

    TOKEN is read as strict CBOR: exactly one item (no bytes after it), no map key or set
    member twice, no text that is not UTF-8, no simple value below 32 in two bytes, no
    value-sharing or string-reference tag, no bignum that fits an integer, no tag holding what
    is not its content (a date tag holding a number), nothing nested deeper than 32 levels;
    any of these is a usage error naming its byte, or inside a platform or realm token a
    failed claims check. Other well-formed CBOR (RFC 8949) is read:
    indefinite-length strings, arrays and maps and integer heads longer than needed have one
    value each, and signatures cover the bytes as sent. A text claim that is not one line of
    printable characters is shown quoted, with escapes.
    """
    # A value no valid token can carry would only turn into a failed check (exit 1) that
    # blames the token; it is the command line that is wrong.
    if challenge is not None and len(challenge) > CHALLENGE_SIZE:
        raise click.BadParameter(f"{count(len(challenge), 'byte')}; expected at most {CHALLENGE_SIZE} "
                                 "(RSI_ATTESTATION_TOKEN_INIT "
                                 "takes a 64-byte challenge, shorter ones zero-padded)", param_hint="'--challenge'")
    if expect_rim is not None and len(expect_rim) not in MEASUREMENT_SIZES:
        raise click.BadParameter(f"{count(len(expect_rim), 'byte')}; expected "
                                 f"{', '.join(map(str, MEASUREMENT_SIZES[:-1]))} or "
                                 f"{MEASUREMENT_SIZES[-1]} (a SHA-256, SHA-384 or SHA-512 RIM)",
                                 param_hint="'--expect-rim'")
    data = _read_token(token)
    key = _read_bounded(platform_key, "a platform key file", "'--platform-key'") if platform_key else None
    if challenge is not None and len(challenge) < CHALLENGE_SIZE:
        # A relying party's 32-byte nonce reaches the token padded (A7.2.2); compare it so.
        challenge = challenge.ljust(CHALLENGE_SIZE, b"\0")
    try:
        result = verify_token(data, key, expected_challenge=challenge, expected_rim=expect_rim,
                              key_name=shown_path(platform_key) if platform_key else "platform key")
    except TokenFormatError as exc:
        raise click.BadParameter(f"{shown_path(token)}: {exc}", param_hint="TOKEN") from None
    if as_json:
        click.echo(json.dumps({"schema": VERIFY_SCHEMA, **result.to_json()}, indent=2))
    else:
        _print_result(token, len(data), result)
    ctx.exit(_EXIT_BY_VERDICT[result.verdict])


@attest_group.command("inspect")
@click.argument("token", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--json", "as_json", is_flag=True, help="Print the decoded token as JSON instead of tables.")
def inspect_command(token: str, as_json: bool) -> None:
    """Decode TOKEN and print its claims WITHOUT verifying anything.

    Exit status: 0 when TOKEN decodes; 2 when it is unreadable, larger than 64 KiB (a token is a
    few KB) or not a CCA token. TOKEN is decoded as strictly as `verify` reads it. A text
    claim that is not one line of printable characters is shown quoted, with escapes.
    """
    data = _read_token(token)
    try:
        decoded = inspect_token(data)
    except TokenFormatError as exc:
        raise click.BadParameter(f"{shown_path(token)}: {exc}", param_hint="TOKEN") from None
    if as_json:
        click.echo(json.dumps({"schema": INSPECT_SCHEMA, **decoded}, indent=2))
        return
    click.echo(f"CCA token {shown_path(token)}: tag {decoded['tag']}, {len(data)} bytes (NOT verified)")
    for side in ("platform", "realm"):
        part = decoded[side]
        _print_claims(f"{side.capitalize()} token ({part['alg']}) claims", part["claims"])


def _print_result(token: str, size: int, result: VerificationResult) -> None:
    click.echo(f"CCA token {shown_path(token)}: tag {result.tag}, {size} bytes")
    for title, claims in (("Platform claims", result.platform_claims), ("Realm claims", result.realm_claims)):
        if claims is not None:
            _print_claims(title, claims)
    click.echo("\nChecks")
    for check in result.checks:
        click.echo(f"  {_status(check):<12} {check.name:<20} {check.reason}")
        for warning in check.warnings:
            click.echo(f"  {'WARNING':<12} {check.name:<20} {warning}")
    click.echo("")
    click.echo(_summary(result))


def _status(check: Check) -> str:
    return {True: "PASS", False: "FAIL", None: "NOT CHECKED"}[check.passed]


def _summary(result: VerificationResult) -> str:
    if result.verdict == "ok":
        warned = sum(len(c.warnings) for c in result.checks)
        return "Result: VERIFIED (every check passed" + (f"; {count(warned, 'warning')} above)" if warned else ")")
    if result.verdict == "failed":
        failed = ", ".join(c.name for c in result.checks if c.passed is False)
        return f"Result: FAILED ({failed})"
    unchecked = ", ".join(c.name for c in result.checks if c.passed is None)
    return (f"Result: NOT VERIFIED: no check failed, but {unchecked} was not checked"
            + (" (give --platform-key)" if "platform signature" in unchecked else ""))


def _print_claims(title: str, claims: dict[str, Any]) -> None:
    click.echo(f"\n{title}")
    for name, value in claims.items():
        for line in _claim_lines(name, value):
            click.echo(f"  {line}")


def _claim_lines(name: str, value: Any) -> list[str]:
    if name == "lifecycle" and isinstance(value, int) and not isinstance(value, bool):
        return [f"{name:<{_NAME_WIDTH}} {value} ({value:#06x}, {lifecycle_state(value) or 'no defined state'})"]
    if not isinstance(value, list):
        return [f"{name:<{_NAME_WIDTH}} {_scalar(value)}"]
    lines = [f"{name:<{_NAME_WIDTH}} {len(value)} {'entry' if len(value) == 1 else 'entries'}"]
    for i, item in enumerate(value):
        index = f"[{i}]"
        if not isinstance(item, dict):
            lines.append(f"  {index:<{_NAME_WIDTH - 2}} {_scalar(item)}")
            continue
        for j, (key, field) in enumerate(item.items()):
            # a software component's field by the CCA name (key 6: hash_algo_id), its JSON key apart
            shown = SHOWN_FIELD[key] if name == "sw_components" and key in SHOWN_FIELD else key
            lines.append(f"  {index if j == 0 else '':<5} {_text(shown):<{_NAME_WIDTH - 8}} {_scalar(field)}")
    return lines


def _scalar(value: Any) -> str:
    return _text(value) if isinstance(value, str) else json.dumps(value)


def _text(text: str) -> str:
    """A claim's text (or a map key in it) as a table shows it: as it is when it is one line of
    printable characters, else as a quoted string with escapes. The token's issuer chose it: an
    ESC, BEL or C1 control printed raw would act on the terminal (click strips only the ESC [
    sequences, and only when the output is not a terminal)."""
    return text if not_one_printable_line(text) is None else basic_string(text)
