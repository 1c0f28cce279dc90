"""`rmm-mp attest verify|inspect` through click's runner: output, --json and exit codes.

(Named test_attest_cli.py, not test_cli.py: tests/cli/test_cli.py exists and the test
folders have no __init__.py, so two modules called test_cli would collide.)
"""

from __future__ import annotations

import json
from pathlib import Path

from typing import Callable

import cbor2
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import ec

from rmm_mp.attest import encode_cca_token, sign_cose_sign1

from rmm_mp.attest.cli import EXIT_FAILED, EXIT_OK, EXIT_UNVERIFIED, EXIT_USAGE, attest_group
from rmm_mp.attest.platform_claims import check_platform_claims

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ccatoken"
TESTDATA = VECTORS / "veraison-rust-ccatoken" / "testdata"
FFM = TESTDATA / "cca-token-draft-ffm-00.cbor"
TA_TFA = TESTDATA / "ta-tfa.json"
BUG33 = TESTDATA / "bug-33-repro.cbor"
FFM_CHALLENGE = ("6e86d6d97cc713bc6dd43dbce491a6b40311c027a8bf85a39da63e9ce44c132a"
                 "8a119d296fae6a6999e9bf3e4471b0ce01245d889424c31e89793b3b1d6b1504")
FFM_RIM = "311314ab73620350cf758834ae5c65d9e8c2dc7febe6e7d9654bbe864e300d49"


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(attest_group, [str(a) for a in args], catch_exceptions=False)


def test_verify_good_token_prints_claims_and_checks_and_exits_0() -> None:
    """verify cca-token-draft-ffm-00.cbor --platform-key ta-tfa.json: the claims tables (with
    the lifecycle state and the software components), five PASS lines, 'VERIFIED', exit 0."""
    result = _run("verify", FFM, "--platform-key", TA_TFA)
    assert result.exit_code == EXIT_OK, result.output
    for text in ("Platform claims", "Realm claims", "implementation_id", "12291 (0x3003, secured)",
                 "measurement_type", "RSE_BL1_2", f"initial_measurement{' ' * 14}{FFM_RIM}", "Result: VERIFIED"):
        assert text in result.output
    assert result.output.count("  PASS ") == 5 and "FAIL" not in result.output


def test_verify_broken_binding_exits_1_with_the_reason() -> None:
    """verify bug-33-repro.cbor with its key: the binding FAILs with both hashes, exit 1."""
    result = _run("verify", BUG33, "--platform-key", TA_TFA)
    assert result.exit_code == EXIT_FAILED
    assert "FAIL         binding" in result.output and "not issued for this realm token's RAK" in result.output
    assert "Result: FAILED (binding)" in result.output


def test_verify_without_platform_key_is_not_success() -> None:
    """verify without --platform-key: realm checks pass, the platform signature is NOT
    CHECKED, the summary says so and asks for --platform-key, and the exit status is 3."""
    result = _run("verify", FFM)
    assert result.exit_code == EXIT_UNVERIFIED
    assert "NOT CHECKED  platform signature" in result.output
    assert "NOT VERIFIED" in result.output and "give --platform-key" in result.output


def test_a_rim_not_as_long_as_the_realm_hash_is_a_warning_not_a_failure() -> None:
    """verify cca-token-02.cbor with ta-02-ok.json (veraison's valid vector: claim 44236 says
    "sha-256", the RIM is 64 bytes): it passed silently although A7.2.3.1.6 has that algorithm
    make every hash in the realm token. Now every check still passes and the exit status is
    0, but a WARNING line under realm claims names both claims, the sizes and the spec
    section, the summary counts it, and --json lists it; a token whose RIM fits (ffm-00) has
    none."""
    token, key = TESTDATA / "cca-token-02.cbor", TESTDATA / "ta-02-ok.json"
    result = _run("verify", token, "--platform-key", key)
    assert result.exit_code == EXIT_OK, result.output
    warning = ("realm claim 44238 (initial_measurement) is 64 bytes, but realm claim 44236 (hash_algo_id) names "
               "'sha-256', whose digests are 32 bytes (RMM spec A7.2.3.1.6")
    assert f"  WARNING      realm claims         {warning}" in result.output
    assert "Result: VERIFIED (every check passed; 1 warning above)" in result.output
    checks = json.loads(_run("verify", token, "--platform-key", key, "--json").output)["checks"]
    assert [len(c["warnings"]) for c in checks] == [0, 0, 1, 0, 0] and warning in checks[2]["warnings"][0]
    fits = _run("verify", FFM, "--platform-key", TA_TFA)
    assert "WARNING" not in fits.output and "Result: VERIFIED (every check passed)" in fits.output


def test_a_failed_realm_claims_check_carries_no_warning(tmp_path: Path, realm_claims: Callable[..., bytes],
                                                        sample_rak: ec.EllipticCurvePrivateKey,
                                                        sample_platform_token: bytes) -> None:
    """A realm token whose claims fail (a 63-byte personalization value) and whose RIM is 64
    bytes under "sha-256": the RIM-length warning ("... accepted, as veraison's verifiers
    accept it") was attached to the FAILed check and printed under it, though the check
    accepted nothing. A warning names what a passing check accepts: the failed check has
    none, neither in the output nor in --json; the same token with a good personalization
    value passes with the warning."""
    def token(rpv: bytes) -> Path:
        claims = dict(cbor2.loads(realm_claims(initial_measurement=b"\x11" * 64,
                                               extensible_measurements=[bytes([i]) * 64 for i in range(4)])))
        claims[44235] = rpv
        path = tmp_path / f"token-{len(rpv)}.cbor"
        path.write_bytes(encode_cca_token(sample_platform_token, sign_cose_sign1(cbor2.dumps(claims), sample_rak)))
        return path

    bad = _run("verify", token(b"\x5a" * 63))
    assert "FAIL         realm claims" in bad.output and "44235" in bad.output, bad.output
    assert "WARNING" not in bad.output and "warning" not in bad.output
    checks = json.loads(_run("verify", token(b"\x5a" * 63), "--json").output)["checks"]
    assert [c["warnings"] for c in checks] == [[]] * 5
    good = _run("verify", token(b"\x5a" * 64))
    assert "PASS         realm claims" in good.output and "  WARNING      realm claims" in good.output, good.output


def test_verify_json() -> None:
    """--json prints one JSON document: ok, verdict, every check with name/passed/reason, and
    the claims with bytes as hex; the exit status is the same as without --json."""
    result = _run("verify", FFM, "--platform-key", TA_TFA, "--json")
    assert result.exit_code == EXIT_OK
    doc = json.loads(result.output)
    assert doc["ok"] is True and doc["verdict"] == "ok" and doc["tag"] == 399
    assert [c["name"] for c in doc["checks"]] == ["platform claims", "platform signature", "realm claims",
                                                  "realm signature", "binding"]
    assert doc["realm_claims"]["initial_measurement"] == FFM_RIM and len(doc["platform_claims"]["sw_components"]) == 13
    unverified = _run("verify", FFM, "--json")
    assert unverified.exit_code == EXIT_UNVERIFIED and json.loads(unverified.output)["verdict"] == "incomplete"


@pytest.mark.parametrize("option, good", [("--challenge", FFM_CHALLENGE), ("--expect-rim", FFM_RIM)])
def test_expected_values_match_or_fail(option: str, good: str) -> None:
    """--challenge / --expect-rim: the token's value passes (exit 0, with 0x prefix allowed); a
    different value fails with both values shown (exit 1); a 1-byte challenge is compared
    zero-padded, a 1-byte RIM is a usage error (no RIM is 1 byte long)."""
    ok = _run("verify", FFM, "--platform-key", TA_TFA, option, "0x" + good.upper())
    assert ok.exit_code == EXIT_OK, ok.output
    wrong = "00" + good[2:]
    bad = _run("verify", FFM, "--platform-key", TA_TFA, option, wrong)
    assert bad.exit_code == EXIT_FAILED
    assert f"is {good} ({len(good) // 2} bytes); expected {wrong} ({len(wrong) // 2} bytes)" in bad.output
    one = _run("verify", FFM, "--platform-key", TA_TFA, option, "00")      # one byte reads as one
    if option == "--challenge":     # padded: below
        assert one.exit_code == EXIT_FAILED and "; expected " + "00" * 64 + " (64 bytes)" in one.output, one.output
    else:
        assert one.exit_code == EXIT_USAGE and "1 byte; expected 32, 48 or 64" in one.output, one.output


def test_a_short_challenge_is_zero_padded_as_the_realm_pads_it(tmp_path: Path, sample_rak,  # type: ignore[no-untyped-def]
                                                               sample_platform_token: bytes, cpak_pub: bytes,
                                                               realm_claims) -> None:
    """A relying party's 32-byte nonce is zero-padded to 64 bytes before the realm calls
    RSI_ATTESTATION_TOKEN_INIT (A7.2.2): --challenge with the 32 bytes verifies the token, as
    does the padded form; another 32 bytes fail. (It used to fail on the length.)"""
    from rmm_mp.attest import encode_cca_token, sign_cose_sign1
    nonce = bytes(range(100, 132))
    token = tmp_path / "t.cbor"
    token.write_bytes(encode_cca_token(sample_platform_token,
                                       sign_cose_sign1(realm_claims(challenge=nonce + bytes(32)), sample_rak)))
    key = tmp_path / "platform.pub"
    key.write_bytes(cpak_pub)
    for given in (nonce, nonce + bytes(32)):
        result = _run("verify", token, "--platform-key", key, "--challenge", given.hex())
        assert result.exit_code == EXIT_OK, result.output
    assert _run("verify", token, "--platform-key", key, "--challenge", bytes(32).hex()).exit_code == EXIT_FAILED


@pytest.mark.parametrize("value, what", [("xyz", "is not a hex byte string"), ("abc", "is not a hex byte string"),
                                         ("", "is empty"), (" 0x ", "is empty")])
def test_bad_hex_is_a_usage_error_naming_the_option(value: str, what: str) -> None:
    """--challenge that is not an even number of hex digits, or none: exit 2, naming the
    option and, for no digits at all, saying so (an empty value was told to be an even
    number of digits, which zero is)."""
    result = _run("verify", FFM, "--challenge", value)
    assert result.exit_code == EXIT_USAGE
    assert "Invalid value for '--challenge'" in result.output and f"{value!r} {what}; expected a non-zero" in result.output


@pytest.mark.parametrize("option, sizes", [
    ("--challenge", "(at most 64 bytes = 128 digits for a challenge)"),
    ("--expect-rim", "(32, 48 or 64 bytes = 64, 96 or 128 digits for a RIM)"),
])
def test_bad_hex_names_the_sizes_of_its_own_option(option: str, sizes: str) -> None:
    """Bad hex for --expect-rim names a RIM's sizes, not a challenge's 64 bytes (its hint
    was the challenge's for both options)."""
    result = _run("verify", FFM, option, "zz")
    assert result.exit_code == EXIT_USAGE
    assert f"Invalid value for '{option}'" in result.output and sizes in result.output, result.output


def test_invalid_platform_key_fails_verification() -> None:
    """cca-token-02.cbor with ta-02-bad.json (off-curve point): a failed check, not a crash
    and not a usage error: exit 1 with 'platform key invalid'."""
    result = _run("verify", TESTDATA / "cca-token-02.cbor", "--platform-key", TESTDATA / "ta-02-bad.json")
    assert result.exit_code == EXIT_FAILED and "platform key invalid" in result.output


def test_a_key_file_with_no_key_is_a_failed_check_with_a_json_report_as_help_says(tmp_path: Path) -> None:
    """A --platform-key file holding no key at all (a line of text) is a failed platform
    signature check, exit 1, not a usage error (exit 2, as a workload file with bad content
    is): --json still gives the report, verdict "failed" and the check's reason, and verify's
    --help exit-status list says that such a file is exit 1 (it said only "a check failed",
    leaving a key file that is no key looking like a usage error's "file")."""
    key = _write(tmp_path / "garbage.key", b"garbage\n")
    result = _run("verify", FFM, "--platform-key", key, "--json")
    assert result.exit_code == EXIT_FAILED, result.output
    report = json.loads(result.output)
    check = next(c for c in report["checks"] if c["name"] == "platform signature")
    assert report["verdict"] == "failed" and check["passed"] is False
    assert check["reason"].startswith(f"platform key invalid: {key} is none of")
    help_text = " ".join(_run("verify", "--help").output.split())
    assert "1 a check failed; its reason is printed (and is in --json): a --platform-key file that holds no " \
           "usable key is one" in help_text, help_text


@pytest.mark.parametrize("crv", [["P-384"], {"P-384": 1}], ids=["array", "map"])
def test_jwk_whose_crv_is_not_text_fails_verification(tmp_path: Path, crv: object) -> None:
    """A JWK platform key whose "crv" is a JSON array or object was looked up in the curve
    table as it was: TypeError (unhashable), a traceback. Now it is an invalid platform key,
    like any other unknown curve: exit 1 naming what "crv" holds."""
    key = tmp_path / "key.jwk"
    key.write_text(json.dumps({"kty": "EC", "crv": crv, "x": "AA", "y": "AA"}))
    result = CliRunner().invoke(attest_group, ["verify", str(FFM), "--platform-key", str(key)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == EXIT_FAILED
    assert "platform key invalid" in result.output and f"JWK crv is {json.dumps(crv)}" in result.output


def test_inspect_prints_claims_without_verifying() -> None:
    """inspect: both claim tables with the algorithms, marked NOT verified, no checks, exit 0;
    --json gives alg, protected header, signature and claims per token."""
    result = _run("inspect", BUG33)
    assert result.exit_code == EXIT_OK
    assert "NOT verified" in result.output and "Platform token (ES384) claims" in result.output
    assert "Realm token (ES384) claims" in result.output and "Checks" not in result.output
    doc = json.loads(_run("inspect", BUG33, "--json").output)
    assert doc["platform"]["protected"] == "a1013822" and doc["realm"]["claims"]["hash_algo_id"] == "sha-512"


@pytest.mark.parametrize("args, status, schema", [
    (["verify", FFM, "--platform-key", TA_TFA], EXIT_OK, "rmm-mp-attest-verify/1"),
    (["verify", TESTDATA / "cca-token-02.cbor", "--platform-key", TESTDATA / "ta-02-bad.json"], EXIT_FAILED,
     "rmm-mp-attest-verify/1"),
    (["verify", FFM], EXIT_UNVERIFIED, "rmm-mp-attest-verify/1"),
    (["inspect", BUG33], EXIT_OK, "rmm-mp-attest-inspect/1")], ids=["verified", "failed", "unverified", "inspect"])
def test_attest_json_names_its_schema(args: list[str | Path], status: int, schema: str) -> None:
    """`attest verify --json` (each verdict that prints JSON: verified, a failed check, not
    verified) and `attest inspect --json` open with a "schema" key naming the document. Neither
    had one: a script could not tell them from the other commands' JSON (only `run`'s named
    itself). Inspect's is beside "tag", "platform" and "realm", which the command chooses: the
    token's own claims are under "claims", so no claim can clash with it."""
    result = _run(*args, "--json")
    assert result.exit_code == status, result.output
    document = json.loads(result.output)
    assert next(iter(document.items())) == ("schema", schema), document
    if args[0] == "inspect":
        assert list(document) == ["schema", "tag", "platform", "realm"]


def test_inspect_json_is_strict_json_with_a_nan_claim(tmp_path: Path, sample_rak,  # type: ignore[no-untyped-def]
                                                     sample_platform_token: bytes, realm_claims) -> None:
    """An unknown realm claim holding NaN or an infinity (CBOR allows both): inspect --json
    writes {"float": "nan"} and the like, not the bare NaN / Infinity tokens json.dumps emits,
    which no JSON parser but Python's accepts (found by fuzzing the attest commands)."""
    import cbor2

    from rmm_mp.attest import encode_cca_token, sign_cose_sign1
    claims = dict(cbor2.loads(realm_claims()))
    claims[99999], claims[99998] = float("nan"), float("-inf")
    token = tmp_path / "t.cbor"
    token.write_bytes(encode_cca_token(sample_platform_token, sign_cose_sign1(cbor2.dumps(claims), sample_rak)))
    result = _run("inspect", token, "--json")
    assert result.exit_code == EXIT_OK, result.output

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in --json output")

    doc = json.loads(result.output, parse_constant=no_constants)
    unknown = json.dumps(doc["realm"])
    assert '{"float": "nan"}' in unknown and '{"float": "-inf"}' in unknown, unknown

@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_claim_text_with_control_characters_is_shown_escaped(tmp_path: Path, command: str) -> None:
    """The claims tables of a token whose issuer put terminal controls in its text claims (a
    software component's type and version, the verification service, the realm profile, an
    unknown claim's list of text and of a map keyed by text): each is shown quoted with its
    escapes, and no ESC, BEL or C1 control reaches the output, as it would reach a terminal
    (the runner's color=True: click strips only ESC [ sequences, and only when not on one)."""
    outer = cbor2.loads(FFM.read_bytes())
    platform, realm = (cbor2.loads(outer.value[key]) for key in (44234, 44241))
    platform_claims, realm_claims = cbor2.loads(platform.value[2]), cbor2.loads(realm.value[2])
    platform_claims[2399][0][1] = "RSE\x07"
    platform_claims[2399][0][4] = "1\x1b]0;owned\x07"
    platform_claims[2400] = "https://\x1b[2J"
    realm_claims[265] = "tag\x9b2J"
    realm_claims[99] = ["\x1b[7m", {"\x1b[5mkey": "v"}]
    platform.value[2], realm.value[2] = cbor2.dumps(platform_claims), cbor2.dumps(realm_claims)
    token = _write(tmp_path / "controls.cbor",
                   cbor2.dumps(cbor2.CBORTag(399, {44234: cbor2.dumps(platform), 44241: cbor2.dumps(realm)})))
    args = [command, str(token)] + (["--platform-key", str(TA_TFA)] if command == "verify" else [])
    result = CliRunner().invoke(attest_group, args, catch_exceptions=False, color=True)
    assert result.exit_code == (EXIT_FAILED if command == "verify" else EXIT_OK), result.output
    controls = [c for c in result.output if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0]
    assert not controls, result.output
    for shown in ('"RSE\\u0007"', '"1\\u001B]0;owned\\u0007"', '"https://\\u001B[2J"', '"tag\\u009B2J"',
                  '"\\u001B[7m"', '"\\u001B[5mkey"'):
        assert shown in result.output, (shown, result.output)


@pytest.mark.parametrize("command", ["verify", "inspect"])
@pytest.mark.parametrize("make, phrase", [
    (lambda d: d / "missing.cbor", "does not exist"),
    (lambda d: d, "is a directory"),
    (lambda d: _write(d / "empty.cbor", b""), "is empty; expected a CCA token"),
    (lambda d: _write(d / "text.cbor", b"# not cbor\n"), "expected exactly one CBOR item"),
    (lambda d: _write(d / "hello.cbor", b"hello"), "truncated CBOR"),
    (lambda d: VECTORS / "tf-a-fvp-sample" / "fvp_sample_platform_token.cbor", "found tag 18"),
    (lambda d: VECTORS / "veraison-ccatoken" / "extracted" / "test_common" / "testBadUnwrappedTokens.cbor",
     "must be [263, byte string"),
])
def test_bad_token_files_are_usage_errors(tmp_path: Path, command: str, make, phrase: str) -> None:  # type: ignore[no-untyped-def]
    """A missing file, a directory, an empty file, non-CBOR, a bare COSE_Sign1 (wrong tag) and
    veraison's unwrapped-entries token: exit 2 with a message naming the file and what a CCA
    token must be."""
    path = make(tmp_path)
    result = _run(command, path)
    assert result.exit_code == EXIT_USAGE
    assert phrase in result.output and Path(path).name in result.output


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_help_documents_the_exit_codes() -> None:
    """verify --help lists exit statuses 0, 1, 2 and 3 with their meaning."""
    text = _run("verify", "--help").output
    for line in ("0  every check passed", "1  a check failed", "2  usage error",
                 "3  no check failed, but the platform signature was NOT verified"):
        assert line in text


@pytest.mark.parametrize("command", ["inspect", "verify"])
@pytest.mark.parametrize("value, phrase", [
    ("c4821b7fffffffffffffff01", "CBOR tag 4 (decimal fraction) at byte 7 (the value of map key 44234"),
    ("c259080000" + "ff" * 0x800, "2048-byte number"),           # 16,384-bit bignum: over 4300 digits
], ids=["decimal-fraction", "huge-bignum"])
def test_numbers_cbor2_cannot_build_or_python_cannot_print_are_usage_errors(
        tmp_path: Path, command: str, value: str, phrase: str) -> None:
    """An envelope entry holding such a number was a traceback (decimal.InvalidOperation from
    cbor2, or ValueError from int -> str in the error message); now exit 2 naming it."""
    token = _write(tmp_path / "t.cbor", bytes.fromhex("d9018fa219acca" + value + "19acd140"))
    result = _run(command, token)
    assert result.exit_code == EXIT_USAGE
    assert phrase in result.output


@pytest.mark.parametrize("option, size, phrase", [
    ("--challenge", 65, "65 bytes; expected at most 64"),
    ("--challenge", 128, "128 bytes; expected at most 64"),
    ("--expect-rim", 31, "31 bytes; expected 32, 48 or 64"),
    ("--expect-rim", 33, "33 bytes; expected 32, 48 or 64"),
    ("--expect-rim", 65, "65 bytes; expected 32, 48 or 64"),
])
def test_an_expected_value_no_token_can_hold_is_a_usage_error(option: str, size: int, phrase: str) -> None:
    """A --challenge longer than 64 bytes or an --expect-rim of a length no RIM has cannot match
    any valid token: exit 2 naming the option, the length and what is allowed (it was a failed
    check, exit 1, that blamed the token)."""
    result = _run("verify", FFM, "--challenge" if option == "--challenge" else "--expect-rim", "ab" * size)
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"Invalid value for '{option}'" in result.output and phrase in result.output


@pytest.mark.parametrize("command", ["verify", "inspect", "verify-key"])
def test_token_and_key_files_over_the_bound_are_usage_errors(tmp_path: Path, command: str) -> None:
    """A TOKEN, or a --platform-key file, of one byte more than MAX_FILE (64 KiB; a sparse file)
    is a usage error naming the file and the bound, read no further; a token of exactly the
    bound is read (and then refused as no CBOR item, which it is not)."""
    from rmm_mp.attest.cli import MAX_FILE
    big = tmp_path / "big"
    with open(big, "wb") as file:
        file.truncate(MAX_FILE + 1)
    args = ["verify", FFM, "--platform-key", big] if command == "verify-key" else [command, big]
    result = _run(*args)
    assert result.exit_code == EXIT_USAGE, result.output
    what = "a platform key file" if command == "verify-key" else "a CCA token"
    assert f"{big} has more than 65,536 bytes; expected {what} of at most 65,536 bytes (64 KiB)" in \
        " ".join(result.output.split()), result.output
    with open(big, "r+b") as file:
        file.truncate(MAX_FILE)
    if command != "verify-key":
        result = _run(command, big)
        assert result.exit_code == EXIT_USAGE and "more than" not in result.output, result.output


def test_indefinite_length_and_wide_heads_are_read_as_the_help_says(tmp_path: Path) -> None:
    """verify --help says well-formed CBOR beyond the shortest form is read: the draft-ffm token
    rewritten with an indefinite-length outer map, its realm token in an indefinite-length byte
    string of two chunks and its platform label in a 4-byte head verifies as the original does
    (exit 0, the same claims), while the same token with a byte after it is a usage error."""
    entries = cbor2.loads(FFM.read_bytes()).value
    realm = entries[44241]
    rewritten = (bytes.fromhex("d9018f" "bf" "1a0000acca") + cbor2.dumps(entries[44234])
                 + cbor2.dumps(44241) + b"\x5f" + cbor2.dumps(realm[:100]) + cbor2.dumps(realm[100:]) + b"\xff\xff")
    token = tmp_path / "rewritten.cbor"
    token.write_bytes(rewritten)
    read = _run("verify", token, "--platform-key", TA_TFA, "--json")
    assert read.exit_code == EXIT_OK, read.output
    expected = json.loads(_run("verify", FFM, "--platform-key", TA_TFA, "--json").output)
    assert json.loads(read.output)["realm_claims"] == expected["realm_claims"]
    assert json.loads(read.output)["platform_claims"] == expected["platform_claims"]
    token.write_bytes(rewritten + b"\x00")
    assert _run("verify", token, "--platform-key", TA_TFA).exit_code == EXIT_USAGE
    assert "indefinite-length strings, arrays and maps" in _run("verify", "--help").output


@pytest.mark.parametrize("command", [("inspect",), ("verify", "--platform-key", TA_TFA)])
def test_a_software_components_key_6_is_shown_as_its_hash_algorithm_id(command: tuple[str | Path, ...]) -> None:
    """Key 6 of a CCA platform software component is its hash algorithm ID (RMM spec A7.2.3.2.7;
    ffm-00's components hold 'sha-256' there); the tables showed PSA's name for it,
    'measurement_description'. The JSON keeps that key (docs/deviations.md), the tables say hash_algo_id."""
    text = _run(command[0], FFM, *command[1:]).output
    assert "measurement_description" not in text, text
    assert f"      hash_algo_id{' ' * 13}sha-256" in text, text
    doc = json.loads(_run(command[0], FFM, *command[1:], "--json").output)
    claims = doc["platform"]["claims"] if command[0] == "inspect" else doc["platform_claims"]
    assert claims["sw_components"][0]["measurement_description"] == "sha-256"
    assert "hash_algo_id" not in claims["sw_components"][0]


def test_a_bad_key_6_is_named_by_its_cca_name() -> None:
    """A check message named key 6 by PSA's name too."""
    problems = check_platform_claims({2399: [{2: bytes(32), 5: bytes(32), 6: 7}]})
    assert any("(sw_components)[0] hash_algo_id (6) must be" in p for p in problems), problems
