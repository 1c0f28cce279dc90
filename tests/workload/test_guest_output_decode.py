"""The report's copy of a guest's console (workload.realms.guest_output): the realm table keeps
the console's last CONSOLE_BYTES bytes in a ring (host.devices), decoded as UTF-8 for the report.
"""

from __future__ import annotations

from rmm_mp.host.devices import RealmStatus
from rmm_mp.host.realm_entry import CONSOLE_BYTES
from rmm_mp.workload.realms import guest_output
from rmm_mp.workload.render import format_report
from rmm_mp.workload.report import RealmOutcome
from stats.report_samples import hand_built


def _status(console: bytes, written: int) -> RealmStatus:
    return RealmStatus(slot=0, rd=0, state="DONE", end="SYSTEM_OFF", vcpu_states=(), vcpu_ends=(), counters={},
                       console=console, device=(written, 0, 0, 0), reports=0, result=(0, 0), log=(), log_count=0,
                       shared_pages=())


def test_a_character_the_ring_cut_at_its_start_is_left_out() -> None:
    """A guest printed "€" (3 bytes) 342 times, then "ab", so that the ring's last CONSOLE_BYTES
    bytes start with the last 2 bytes of a "€": the report's console starts at the next whole "€", with no
    U+FFFD (before, the 2 cut bytes decoded as 2 U+FFFD). A tail that starts on a whole
    character keeps every byte; a console that never wrapped keeps a stray continuation byte
    the guest did write (U+FFFD); a cut character at the end (the run ended mid-character) stays
    a U+FFFD."""
    euro = "€".encode()
    printed = euro * 342 + b"ab"
    tail = printed[-CONSOLE_BYTES:]
    assert tail[:2] == euro[1:]
    out = guest_output(_status(tail, len(printed)))
    assert out.console == "€" * 340 + "ab" and out.console_bytes == len(printed)
    whole = (b"a" + euro * 341)[-CONSOLE_BYTES:]
    assert guest_output(_status(whole, CONSOLE_BYTES + 1)).console == "a" + "€" * 341
    assert guest_output(_status(euro[1:] + b"ok", 4)).console == "\ufffd\ufffdok"
    assert guest_output(_status(b"ok" + euro[:2], 4)).console == "ok\ufffd"


def test_the_header_of_a_cut_console_says_up_to_the_last_bytes_shown() -> None:
    """The console of the test above, its ring cut inside a "€": the report shows 1,022 of the
    last 1,024 bytes, so the block's header says "up to the last 1,024 shown" (it said "the
    last 1,024 shown", 2 more than it showed); a console that fits whole says nothing of it."""
    euro = "€".encode()
    printed = euro * 342 + b"ab"
    out = guest_output(_status(printed[-CONSOLE_BYTES:], len(printed)))
    assert len(out.console.encode()) == CONSOLE_BYTES - 2
    text = format_report(hand_built(realms=(RealmOutcome("vm", 1, False, "failed", {}, out),)))
    assert "Guest output of vm: console (1,028 bytes written, up to the last 1,024 shown), LOG (0 records)" \
        in text, text
    whole = guest_output(_status(b"ab", 2))
    text = format_report(hand_built(realms=(RealmOutcome("vm", 1, False, "failed", {}, whole),)))
    assert "Guest output of vm: console (2 bytes written), LOG (0 records)" in text, text
