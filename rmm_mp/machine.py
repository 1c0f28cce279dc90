"""The public Machine API (docs: DESIGN.md section 3, a contract relied on outside the package).

A Machine is a set of shared-memory segments (control block, granule table, GPT, DRAM, per-CPU
areas) plus, in each process that uses it, the objects that reach them. ``Machine.create`` makes
the segments and starts no CPU process; any process can ``Machine.attach(name)``; a CPU is used
by binding it (``m.cpu(i)``) and calling ``smc`` on the handle, which runs the whole path: EL3
world switch, RMM dispatch and handler, REQ_COMPLETE, restore of the Non-secure context.

Lifetime: the creator unlinks every segment on close(), at interpreter exit, on an exception
unwinding a ``with`` block, on Ctrl-C and on SIGTERM/SIGHUP. Attachers never unlink and never
involve multiprocessing's resource tracker (hw.segment maps the files itself). For a creator
killed with SIGKILL, its reaper (hw.reaper, a small process the first create starts) unlinks
them; should that fail too (the reaper killed), the next ``Machine.create`` or ``rmm-mp clean``
removes the orphan.

The CPU handle itself (its layers, ``smc``, its binding and the fork generation) is
rmm_mp.cpu_handle; the process-wide lifetime hooks (the at-exit hook, the SIGTERM/SIGHUP
handler, the lists of machines they close) are rmm_mp.machine_exit.

This module owns the segments, attaching and binding CPUs. It must not hold RMM logic.
"""

from __future__ import annotations

import os
import secrets
import struct
from typing import Any

import atomicshm

from rmm_mp import cpu_handle
from rmm_mp.cpu_handle import Cpu
from rmm_mp.hw import control as ctl
from rmm_mp.hw import cpuarea, orphans, process, reaper, segment, trace
from rmm_mp.hw.control import Control
from rmm_mp.hw.cpuarea import CpuArea
from rmm_mp.hw.faults import MachineError
from rmm_mp.hw.gpt import Gpt, Pas
from rmm_mp.hw.granule import DESCRIPTOR_SIZE, GRANULE_SIZE, GranuleTable, host_owner
from rmm_mp.hw.memory import HostLockWaiter, NsAccess, PhysicalMemory
from rmm_mp.hw.platform import Platform, check as platform_check, load as load_platform
from rmm_mp.hw.segment import Segment
from rmm_mp.hw.tomlnum import int_range
from rmm_mp.hw.tomlsrc import shown_text
# The process-wide clean-up (the at-exit hook, the SIGTERM/SIGHUP handler) is machine_exit's;
# its names stay reachable here, where callers and tests have always found them.
from rmm_mp.machine_exit import _creating, _live, _register
from rmm_mp.machine_exit import install_handlers as install_handlers
from rmm_mp.stats.histogram import REGION_BYTES


def _page_round(size: int) -> int:
    return (size + GRANULE_SIZE - 1) & ~(GRANULE_SIZE - 1)


def _segment_sizes(platform: Platform, cpus: int, trace_capacity: int) -> dict[str, int]:
    count = platform.granule_count
    sizes = {
        "ctl": ctl.SIZE,
        "granules": _page_round(count * DESCRIPTOR_SIZE),
        "gpt": _page_round(count),
        "dram": count * GRANULE_SIZE,
        "cpus": cpus * cpuarea.area_size(REGION_BYTES),
    }
    if trace_capacity:
        # Only machines made for tracing pay for the rings.
        sizes[segment.TRACE_PART] = cpus * trace.region_size(trace_capacity)
    return sizes


class Machine:
    """A simulated machine in shared memory, as seen from this process."""

    def __init__(self, prefix: str, platform: Platform, cpus: int, segments: dict[str, Segment],
                 creator: bool) -> None:
        self.name = prefix
        self.platform = platform
        self.cpus = cpus
        self._segments = segments
        self._creator_pid = os.getpid() if creator else 0
        self._closed = False
        self._generation = cpu_handle.fork_generation()
        self._handles: dict[int, Cpu] = {}
        self._views = {part: atomicshm.AtomicView(segments[part].buf) for part in segment.MACHINE_PARTS}
        self.control = Control(segments["ctl"].buf, self._views["ctl"])
        self.memory = PhysicalMemory(segments["dram"].buf, platform.dram.base, platform.granule_count,
                                     self._views["dram"])
        self.gpt = Gpt(self._views["gpt"], segments["gpt"].buf, platform.granule_count)
        self._area_size = cpuarea.area_size(REGION_BYTES)
        self._host_ns = self._make_host_ns()
        self._features0 = platform.features.register0()

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def create(cls, platform: "str | os.PathLike[str] | Platform" = "host", cpus: int | None = None,
               time_slice: int | None = None, trace_capacity: int = 0, *,
               check_platform: bool = True) -> "Machine":
        """Make a new machine's shared memory; starts no CPU process.

        Args:
            platform: a bundled platform name (platform/NAME.toml), a path to a TOML file, or
                a Platform object (loaded, or built in Python: it gets the loader's checks,
                hw.platform.check, with the loader's errors).
            cpus: how many CPUs, 1..the platform's count (default: all of them).
            time_slice: guest instructions a REC runs per entry before an IRQ exit (default:
                the platform's rec_time_slice).
            trace_capacity: records per CPU trace ring (hw.trace); 0 (the default) makes no
                trace segment and Cpu.set_tracing is then unavailable.
            check_platform: False skips those checks for a Platform object, for tests that
                need a machine no platform file may describe (DRAM above 2^48, to reach the
                RMI's *_bound2 conditions): such a platform may then fail anywhere, later. Its
                DRAM base must still be 4 KiB aligned (ValueError, before anything is created).

        Raises:
            ValueError (ConfigError) for an unknown or invalid platform or a bad cpus value,
            before anything is created; MachineError when /dev/shm (RMM_MP_SHM_DIR) is not a
            usable directory or lacks the space.
        """
        if isinstance(platform, Platform):
            # A Platform built in Python was used as it was: DRAM the loader refuses, a Secure
            # range outside DRAM ..., failing later in the machine, or never.
            plat = platform_check(platform) if check_platform else platform
            base = getattr(getattr(plat, "dram", None), "base", 0)
            if isinstance(base, int) and base % GRANULE_SIZE:
                # Not even check_platform=False: the granule table's address tests (find, lock_two)
                # and the RTT walk work on offsets from the base, which agree with the PA only then.
                raise ValueError(f"dram.base = {base:#x}: expected a 4 KiB-aligned physical address "
                                 "(a machine's DRAM starts at a granule boundary)")
        else:
            plat = load_platform(platform)
        if cpus is None:
            cpus = plat.cpus
        if isinstance(cpus, bool) or not isinstance(cpus, int) or not 1 <= cpus <= plat.cpus:
            raise ValueError(f"cpus = {cpus!r}: expected an integer in {int_range(1, plat.cpus)} "
                             f"(platform {plat.name!r} has {plat.cpus} CPUs)")
        if time_slice is not None and (isinstance(time_slice, bool) or not isinstance(time_slice, int)
                                       or not 1 <= time_slice <= 10**9):
            raise ValueError(f"time_slice = {time_slice!r}: expected a number of guest instructions in "
                             f"{int_range(1, 10**9)}")
        if (isinstance(trace_capacity, bool) or not isinstance(trace_capacity, int)
                or not 0 <= trace_capacity <= 1 << 24):
            raise ValueError(f"trace_capacity = {trace_capacity!r}: expected a number of records per CPU in "
                             f"{int_range(0, 1 << 24)}")
        segment.check_shm_dir()
        orphans.remove_orphans()
        sizes = _segment_sizes(plat, cpus, trace_capacity)
        _check_free_space(plat, sizes)
        prefix = segment.machine_prefix(os.getpid(), secrets.token_hex(4))
        # From the first segment on, a signal or an exception anywhere (even inside
        # Segment.create, after its file exists) must leave nothing: the SIGTERM/SIGHUP
        # handlers are in place first, and they and the except clause unlink every part named
        # after the prefix, not only those already stored below.
        install_handlers()
        _creating.add(prefix)
        created: dict[str, Segment] = {}
        machine: Machine | None = None
        try:
            # Every part's path, those other code makes later under the name (the stress
            # tool's) included, before the first file exists: a SIGKILL from here on leaves
            # nothing (hw.reaper).
            reaper.register(prefix, [segment.segment_path(prefix, part) for part in segment.PARTS])
            for part, size in sizes.items():
                created[part] = Segment.create(prefix, part, size)
            machine = cls(prefix, plat, cpus, created, creator=True)
            machine.control.initialise(cpus, os.getpid(), process.own_start_ms(),
                                       machine._area_size, plat.to_json())
            machine.control.set_time_slice(plat.rec_time_slice if time_slice is None else time_slice)
            machine.control.set_trace_capacity(trace_capacity)
            for region in plat.secure:
                first = (region.base - plat.dram.base) // GRANULE_SIZE
                machine.gpt.set_range(first, region.size // GRANULE_SIZE, Pas.SECURE)
            # Last: until now an attach (`rmm-mp check` racing the run's start) would see a
            # half-made machine, e.g. Secure granules still in the NS PAS.
            machine.control.set_ready()
            _register(machine)
        except BaseException:
            if machine is not None:
                machine.close()
            segment.unlink_parts(prefix)
            reaper.forget(prefix)
            raise
        finally:
            _creating.discard(prefix)
        return machine

    @classmethod
    def attach(cls, name: str) -> "Machine":
        """Map an existing machine by name; closing the result unlinks nothing.

        Raises:
            ValueError if name is not a machine name (not of the rmm-mp-<pid>-<hex> form);
            MachineError if no such machine exists or it cannot be attached.
        """
        # The name as a message shows it (shown_text: abbreviated past 240 characters, escaped
        # if not printable): a long word pasted as the name was printed whole in every refusal.
        shown = shown_text(name) if isinstance(name, str) else repr(name)
        # One wording for every word of another form, as `rmm-mp check` prints it (its MACHINE_NAME).
        not_a_name = (f"name = {shown}: expected a machine name such as 'rmm-mp-1234-0a1b2c3d' "
                      f"({segment.MACHINE_NAME_FORM}, as machines are named and `rmm-mp clean` lists them)")
        if not isinstance(name, str) or not name.startswith(segment.NAME_PREFIX) or "/" in name:
            raise ValueError(not_a_name)
        if segment.is_segment_name(name):
            # A segment's file name, copied from a listing of the segment directory: "no machine
            # named 'rmm-mp-1234-0a1b2c3d.ctl'" read as if the machine were gone.
            machine_name, part = name.rsplit(".", 1)
            raise ValueError(f"name = {shown}: expected a machine name, not the file name of one of its segments "
                             f"(its .{part}): {shown_text(machine_name)}")
        if not segment.is_machine_name(name):
            # As `rmm-mp clean` judges a name: 'rmm-mp-01-...' or a pid in other digits was looked
            # for, and "no machine named" read as if such a machine could be.
            raise ValueError(not_a_name)
        attached: dict[str, Segment] = {}
        try:
            for part in segment.MACHINE_PARTS:
                attached[part] = _attach_part(name, shown, part)
                if part == "ctl" and _being_created(attached[part]):
                    raise FileExistsError   # its creator has not finished making it
        except FileExistsError:
            for seg in attached.values():
                seg.close()
            pid = name[len(segment.NAME_PREFIX):].split("-")[0]
            # Judged as `rmm-mp clean` judges it (process.ended): a creator hidden from /proc
            # (another user's, hidepid) is alive, not "died", which sent the user to a clean
            # that then removed nothing.
            if pid.isdigit() and process.ended(int(pid), lambda start_ms: True):
                raise MachineError(f"machine {shown} was never finished: its creator (pid {pid}) died while making "
                                   "it (`rmm-mp clean` removes it)") from None
            raise MachineError(f"machine {shown} is still being created: try again in a moment") from None
        except MachineError:
            for seg in attached.values():
                seg.close()
            raise
        view = atomicshm.AtomicView(attached["ctl"].buf)
        try:
            # The control block's size first, as it is read next; the others' once it says what they hold.
            _check_size(attached["ctl"], "ctl", ctl.SIZE)
            control = Control(attached["ctl"].buf, view)
            control.check_magic()
            plat = Platform.from_json(control.platform_json())
            cpus = control.cpus
            if control.trace_capacity:
                attached[segment.TRACE_PART] = _attach_part(name, shown, segment.TRACE_PART)
            # A segment shorter than its control block says (truncated by hand, or by a full
            # /dev/shm) was mapped as it was, and `rmm-mp check` then died in a traceback on the
            # first granule past its end, or called a cut DRAM's invariants holding.
            for part, size in _segment_sizes(plat, cpus, control.trace_capacity).items():
                if part != "ctl":
                    _check_size(attached[part], part, size)
        except (MachineError, ValueError) as exc:
            view.close()
            for seg in attached.values():
                seg.close()
            if isinstance(exc, MachineError):
                raise
            raise MachineError(f"{shown}: {exc}") from None
        view.close()
        machine = cls(name, plat, cpus, attached, creator=False)
        _register(machine)
        return machine

    def _make_host_ns(self) -> NsAccess:
        table = GranuleTable(self._views["granules"], self._segments["granules"].buf, self.platform.dram.base,
                             self.platform.granule_count, host_owner(os.getpid()))
        # A lock a crashed RMM or a dead process left held must not hang the host forever.
        table.waiter = HostLockWaiter(self.control, self._views["cpus"], self._area_size, self.cpus)
        return NsAccess(self.memory, table, self.gpt)

    # -- facts (DESIGN.md section 3) -------------------------------------------------------

    @property
    def granule_size(self) -> int:
        return GRANULE_SIZE

    @property
    def dram_base(self) -> int:
        return self.platform.dram.base

    @property
    def granule_count(self) -> int:
        return self.platform.granule_count

    @property
    def pa_bits(self) -> int:
        return self.platform.pa_bits

    @property
    def mmio_regions(self) -> list[tuple[int, int]]:
        return [(r.base, r.size) for r in self.platform.mmio]

    @property
    def secure_regions(self) -> list[tuple[int, int]]:
        return [(r.base, r.size) for r in self.platform.secure]

    @property
    def is_creator(self) -> bool:
        return self._creator_pid == os.getpid()

    @property
    def dead(self) -> bool:
        """Whether the RMM has crashed on some CPU (every smc then raises RmmInternalError)."""
        self._check_open()
        return self.control.dead

    @property
    def dead_reason(self) -> str:
        self._check_open()
        return self.control.dead_reason()

    def granule_table(self, owner: int) -> GranuleTable:
        """A view of the granule table that writes ``owner`` into lock words (internal use)."""
        self._check_open()
        return GranuleTable(self._views["granules"], self._segments["granules"].buf, self.platform.dram.base,
                            self.platform.granule_count, owner)

    @property
    def trace_capacity(self) -> int:
        """Records per CPU trace ring; 0 when the machine was made without tracing."""
        return self.control.trace_capacity

    def trace_region(self, cpu: int) -> memoryview:
        """CPU ``cpu``'s trace ring (hw.trace); release the view when done with it."""
        self._check_open()
        capacity = self.trace_capacity
        if not capacity:
            raise MachineError(f"machine {self.name} has no trace rings (create it with trace_capacity > 0)")
        if not 0 <= cpu < self.cpus:
            raise ValueError(f"cpu = {cpu!r}: expected 0..{self.cpus - 1}")
        size = trace.region_size(capacity)
        return self._segments[segment.TRACE_PART].buf[cpu * size:(cpu + 1) * size]

    def read_trace(self, cpu: int) -> list[tuple[int, int, int, int, int]]:
        """(start_ns, duration_ns, kind, code, arg) of every record in CPU ``cpu``'s ring, oldest first."""
        region = self.trace_region(cpu)
        try:
            return trace.read_ring(region, self.trace_capacity)
        finally:
            region.release()

    def cpu_area(self, cpu: int) -> CpuArea:
        """CPU ``cpu``'s shared area; the caller releases it (internal use: reports, checks)."""
        self._check_open()
        return CpuArea(cpu, self._segments["cpus"].buf, self._views["cpus"], self._area_size)

    # -- CPUs -----------------------------------------------------------------------------

    def cpu(self, i: int) -> "Cpu":
        """Bind simulated CPU i to this process and return its handle.

        Raises:
            ValueError if i is not a CPU id of this machine; CpuBusyError if another live
            process holds CPU i, or this process does through another Machine handle.
        """
        self._check_open()
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.cpus:
            raise ValueError(f"cpu = {i!r}: expected a CPU id in 0..{self.cpus - 1}")
        handle = self._handles.get(i)
        if handle is not None:
            return handle
        area = self.cpu_area(i)
        pid = os.getpid()
        word = cpuarea.binding_word(pid, process.own_start_ms())
        try:
            cpu_handle.claim(area, i, pid, word)
            handle = Cpu(self, i, area, word)
        except BaseException:
            area.release()
            raise
        self._handles[i] = handle
        return handle

    # -- Normal-world memory ------------------------------------------------------------

    def ns_read(self, pa: int, size: int) -> bytes:
        """The host reading NS memory; GranuleProtectionFault if any byte is not NS DRAM.

        A granule lock that can never be released ends the wait for it (hw.memory.HostLockWaiter):
        RmmInternalError when the RMM has crashed, MachineError when the holder's process ended.
        """
        # _check_open and _int_arg written out for the common case (the run loop copies a run
        # page in and out on every REC entry): the helpers run only when a check would fail
        # or a fork has to be noticed, so their errors and effects are the same.
        if self._closed or self._generation != cpu_handle._fork_generation:
            self._check_open()
        if pa.__class__ is not int:
            _int_arg("pa", pa)
        if size.__class__ is not int:
            _int_arg("size", size)
        return self._host_ns.read(pa, size)

    def ns_unpack(self, pa: int, layout: struct.Struct) -> tuple[Any, ...]:
        """``layout.unpack(self.ns_read(pa, layout.size))``, unpacked in place under the granule
        lock (hw.memory.NsAccess.unpack): the same locks, check and errors as ns_read."""
        if self._closed or self._generation != cpu_handle._fork_generation:     # as in ns_read
            self._check_open()
        if pa.__class__ is not int:
            _int_arg("pa", pa)
        return self._host_ns.unpack(pa, layout)

    def ns_access(self) -> NsAccess:
        """This process's host NsAccess, the one ns_read / ns_unpack / ns_write copy through (its
        lock words name this process), for a caller that copies on every step and has its own
        guard against a closed machine or a fork: the run loop, whose REC_ENTER before each copy
        raises through its CPU handle for either (the wrappers' checks and calls were about
        2,400 instructions of a 221,000-instruction host-call round trip). Its read / unpack /
        write take what the wrappers pass on: int addresses, bytes or bytearray data."""
        self._check_open()
        return self._host_ns

    def ns_write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        """The host writing NS memory; GranuleProtectionFault (and no change) if any byte is not NS DRAM.

        A lock that can never be released raises as for ns_read, and nothing is written."""
        if self._closed or self._generation != cpu_handle._fork_generation:     # as in ns_read
            self._check_open()
        if not isinstance(data, (bytes, bytearray)):
            if not isinstance(data, memoryview):
                raise TypeError(f"data: expected bytes-like, got {type(data).__name__}")
            if data.format != "B" or data.ndim != 1:
                # Its bytes, not its items: len() of a 'Q' view counts 8-byte items, so the range
                # check would cover an eighth of it and the copy fail with a shape mismatch.
                if not data.c_contiguous:
                    raise TypeError(f"data: expected a contiguous memoryview, got one of shape {data.shape} "
                                    f"and strides {data.strides}")
                data = data.cast("B")
        if pa.__class__ is not int:
            _int_arg("pa", pa)
        self._host_ns.write(pa, data)

    # -- lifetime -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise MachineError(f"machine {self.name} is closed")
        generation = cpu_handle.fork_generation()
        if self._generation != generation:
            # A forked child inherits the mappings but not the right to use our lock identity.
            self._generation = generation
            self._creator_pid = 0
            self._handles.clear()
            self._host_ns = self._make_host_ns()

    def close(self) -> None:
        """Release this process's CPU bindings and mappings; the creator also unlinks. Idempotent."""
        if self._closed:
            return
        inherited = self._generation != cpu_handle.fork_generation()
        if self._creator_pid == os.getpid() and not inherited:
            try:
                self._unlink()
            except Exception:
                # An unlink refused (EACCES, EROFS, EBUSY ...): the close is finished all the same
                # and the error raised to the caller, who reports it (run.closed names the files
                # left). Left open and in _live, the machine was closed again by the at-exit hook,
                # whose unlink failed the same way: a traceback after the report, "Exception
                # ignored in atexit callback". The reaper still holds the paths (_unlink tells it
                # to forget them only once all are gone) and tries them once this process ends.
                # A KeyboardInterrupt is no Exception: that close stays for the hooks to finish.
                if not self._closed:
                    self._close_mappings(inherited)
                raise
            if self._closed:    # a signal handler's close_all() closed it meanwhile
                return
        self._close_mappings(inherited)

    def _close_mappings(self, inherited: bool) -> None:
        """Mark this machine closed, take it out of the at-exit list and release this process's
        CPU bindings, views and mappings (close, after the creator's unlink)."""
        self._closed = True
        _live.discard(self)
        if not inherited:
            for handle in list(self._handles.values()):
                handle.close()
        self._handles.clear()
        for view in self._views.values():
            view.close()
        for seg in self._segments.values():
            try:
                seg.close()
            except BufferError:
                # A view someone kept alive pins the mapping; the files are unlinked (or, after
                # an unlink refused, left to the reaper) and the memory goes when this process does.
                pass

    def _unlink(self) -> None:
        """Unlink every segment of the machine, even when Ctrl-C interrupts the loop (the
        KeyboardInterrupt propagates once all are gone). The machine stays open and in the
        at-exit list until then: a SIGTERM/SIGHUP handler (close_all, then the process dies)
        or the at-exit hook finishes a close that a signal cut short."""
        try:
            for seg in self._segments.values():
                seg.unlink()
        finally:
            # Also the segments other code made under the machine's name (the stress tool's):
            # on SIGTERM the machine's handler is the only cleanup that runs.
            segment.unlink_parts(self.name)
            # After, never before: killed in between, the reaper unlinks what is left. Its list
            # must not grow with every machine a long process makes.
            reaper.forget(self.name)

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("creator" if self.is_creator else "attached")
        return f"<Machine {self.name} platform={self.platform.name} cpus={self.cpus} {state}>"


def _attach_part(name: str, shown: str, part: str) -> Segment:
    """Map machine ``name``'s segment ``part``, or refuse the machine (MachineError) naming why:
    no control block is no machine; another part missing beside it, or a segment that cannot be
    opened or mapped (a name too long for the file system, an empty or unreadable file, a
    directory in its place), is named by its part."""
    try:
        return Segment.attach(name, part)
    except FileNotFoundError:
        if part != "ctl":
            # "no machine named" read as if there were none, and named no part (a close unlinks the
            # control block first, as every unlinker does, so a machine being closed is seldom caught so).
            raise _missing(shown, part) from None
        raise MachineError(f"no machine named {shown} in {segment.shown_shm_dir()} "
                           "(it was closed, or never existed)") from None
    except (OSError, ValueError) as exc:
        raise _unmappable(shown, part, exc) from None


def _missing(shown: str, part: str) -> MachineError:
    """Machine.attach's refusal of a machine whose control block is there but not its ``part``."""
    return MachineError(f"machine {shown} cannot be attached: its {part} segment is not in {segment.shown_shm_dir()} "
                        "(removed by hand, or the machine is being closed)")


def _unmappable(shown: str, part: str, exc: OSError | ValueError) -> MachineError:
    """The refusal of a machine one of whose segments cannot be opened or mapped."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return MachineError(f"no machine named {shown} can be attached: its {part} segment in "
                        f"{segment.shown_shm_dir()}: {why}")


def _check_size(seg: Segment, part: str, expected: int) -> None:
    """Refuse a segment smaller than the machine it belongs to needs (ValueError: attach words it)."""
    if seg.size < expected:
        raise ValueError(f"its {part} segment in {segment.shown_shm_dir()} holds {seg.size:,} bytes where the "
                         f"machine needs {expected:,}: truncated, or not made by this version of rmm-mp")


def _being_created(seg: Segment) -> bool:
    """Whether a control segment is one Machine.create is still filling in: no magic yet, or
    the magic but not the ready flag (hw.control)."""
    if seg.size < ctl.OFF_READY + 4:
        return False                # not a control block at all: check_magic says so
    header = bytes(seg.buf[:len(ctl.MAGIC)])
    if header == bytes(len(ctl.MAGIC)):
        return True
    return header == ctl.MAGIC and int.from_bytes(seg.buf[ctl.OFF_READY:ctl.OFF_READY + 4], "little") == 0


def _int_arg(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} = {value!r}: expected an int")
    return value


def _check_free_space(plat: Platform, sizes: dict[str, int]) -> None:
    needed = sum(sizes.values())
    free = segment.free_bytes()
    if needed > free:
        raise MachineError(
            f"platform {plat.name!r} needs {needed / 2**20:,.0f} MiB of shared memory but "
            f"{segment.shown_shm_dir()} "
            f"has {free / 2**20:,.0f} MiB free: remove leftovers with `rmm-mp clean`, use a smaller "
            f"platform or fewer CPUs, or enlarge {segment.shown_shm_dir()}")
