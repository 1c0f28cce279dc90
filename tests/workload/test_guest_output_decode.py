"""The report's copy of a guest's console (workload.realms.guest_output): the realm table keeps
the console's last CONSOLE_BYTES bytes in a ring (host.devices), decoded as UTF-8 for the report.
"""

from __future__ import annotations

from rmm_mp.host.devices import RealmStatus
from rmm_mp.host.runqueue import CONSOLE_BYTES
from rmm_mp.workload.realms import guest_output


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
