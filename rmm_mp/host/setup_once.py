"""Once-per-machine set-up of a host area of the control block, and the wait for it.

The host's NS allocator (nsalloc.py) and its run queues (runqueue.py) keep their state in the
control block; whichever process of the machine makes the first handle sets the area up, and
every other process that makes one meanwhile waits until it is ready. Two words per area:

    state   u32: 0 none, 1 being set up, 2 ready
    setter  u64: the process setting it up (or that did), as a CPU binding names one
            (hw.cpuarea.binding_word: pid in bits [31:0], start time in bits [63:32]); 0 none

A process claims the set-up with a compare-and-swap of the setter word from 0 to its own, stores
state 1, sets the area up and stores state 2. The others wait for the 2, backing off as a
granule lock's waiter does (hw.granule.backoff: spins, yields, then sleeps of up to half a
millisecond), so a setter whose process is descheduled or stopped (SIGSTOP, a debugger) costs
them no host core. A setter killed mid-way never stores the 2: once the wait sleeps, a waiter
looks at the setter's process now and then (hw.granule.look_due), and when it has ended (gone,
a zombie, or its pid now naming a process started at another time) takes the set-up over, with a
compare-and-swap on that very setter word (of two such waiters one wins), and does it again from
the start. So a set-up must be idempotent: it may only store values and set bits that nothing
reads before the 2. A takeover must never run over a ready area, whose users have stored since
(a run queue's published cells): so the waiter reads the state again after finding the setter
ended (a setter may store the 2 and end between the waiter's read of the state and its look),
and it relies on a live setter never being judged ended (binding_ended). A setter whose set-up
raises gives its claim back (the setter word to 0) and leaves the state at 1: the next handle
claims it and sets the area up.

This module owns the protocol. It must not know the layouts of the areas it sets up.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import atomicshm

from rmm_mp.hw import process
from rmm_mp.hw.cpuarea import binding_ended, binding_word
from rmm_mp.hw.granule import backoff, look_due

NONE, BUSY, READY = 0, 1, 2
"""Values of an area's state word."""

def set_up_once(view: atomicshm.AtomicView, state: int, setter: int, set_up: Callable[[], None]) -> None:
    """Make sure the area whose state word is at offset ``state`` and setter word at ``setter``
    of ``view`` is set up: by calling ``set_up`` (idempotent) in this process, if no process has
    claimed it or the one that did has ended, else by waiting until that process is done."""
    if view.load_u32(state) == READY:
        return
    me = binding_word(os.getpid(), process.own_start_ms())
    tries = 0
    while view.load_u32(state) != READY:
        word = view.load_u64(setter)
        # The state is read again once the setter is known to have ended: it may have stored
        # READY and ended after the read above, and a set-up redone over a ready area would undo
        # what its users have stored since (a run queue's published cells). Read after its end,
        # a state short of READY stays so: only the setter word's holder stores it, and a
        # waiter that took the set-up over meanwhile changed that word, failing the swap below.
        if (word == 0 or (look_due(tries) and binding_ended(word)
                          and view.load_u32(state) != READY)) \
                and view.cas_u64(setter, word, me) == word:
            view.store_u32(state, BUSY)
            try:
                set_up()
            except BaseException:
                # This process lives on (an interactive session, a supervisor that handles the
                # interrupt): a claim left naming it would hold every later handle for ever.
                # Given back, the next handle's claim (from 0) does the set-up again.
                view.cas_u64(setter, me, 0)
                raise
            view.store_u32(state, READY)
            return
        tries += 1
        backoff(tries)

