"""The public Machine API contract (DESIGN.md section 3), rule by rule, from one test process.

Creation, platform facts, CPU binding, smc argument and result rules, RMM crashes
(RmmInternalError), checked Normal-world memory access and attaching by name. Where another
process is needed (a binding held elsewhere, attach from elsewhere) it is a short subprocess
or an os.fork child; everything that kills creators or checks /dev/shm after process death
lives in tests/stress/test_shm_lifetime.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest

from children import CHILD_TIMEOUT_S, entries_of, finish, read_line, start_child, tell
from footprint import snapshot
from rmm_mp import Cpu, GranuleProtectionFault, Machine, RmmInternalError
from rmm_mp.hw.faults import CpuBusyError, MachineError
from rmm_mp.abi.rmi import RMI_ABI_VERSION, RmiFid, RmiStatus
from rmm_mp.hw import cpuarea, process, reaper, segment
from rmm_mp.hw.cpuarea import OFF_NS_CTX
from rmm_mp.hw.gpt import Gpt
from rmm_mp.hw.granule import host_owner
from rmm_mp.hw.platform import platform_dir
from rmm_mp.rmm import dispatch

U64 = (1 << 64) - 1
SMC_UNKNOWN = 0xFFFF_FFFF_FFFF_FFFF
VERSION = int(RmiFid.RMI_VERSION)
PSCI_VERSION = 0x8400_0000   # outside the RMI range: EL3 answers SMC_UNKNOWN, registers untouched
FEATURES = int(RmiFid.RMI_FEATURES)
DELEGATE = int(RmiFid.RMI_GRANULE_DELEGATE)
UNDELEGATE = int(RmiFid.RMI_GRANULE_UNDELEGATE)
SUCCESS = int(RmiStatus.RMI_SUCCESS)
ERROR_INPUT = int(RmiStatus.RMI_ERROR_INPUT)
V10 = RMI_ABI_VERSION
HOST_CPUS = 4


# -- helpers ----------------------------------------------------------------------------------

def my_shm_entries() -> set[str]:
    """/dev/shm entries of machines whose creator is this test process."""
    mine = f"{segment.NAME_PREFIX}{os.getpid()}-"
    return {name for name in os.listdir(segment.SHM_DIR) if name.startswith(mine)}


def create_fails(exc_type: type[BaseException], *args: object, **kwargs: object) -> str:
    """Machine.create(*args, **kwargs) must raise exc_type; returns the message. A machine
    created against expectation is closed before the test fails, so nothing leaks."""
    try:
        m = Machine.create(*args, **kwargs)  # type: ignore[arg-type]
    except exc_type as exc:
        return str(exc)
    m.close()
    pytest.fail(f"Machine.create{args!r} {kwargs!r} made {m.name} instead of raising {exc_type.__name__}")


# A process that attaches machine argv[1], binds CPU argv[2], reports, then obeys stdin:
# "close" closes the machine handle and reports "closed"; an empty line ends the process.
BINDER = r"""
import os, sys
from rmm_mp import Machine
m = Machine.attach(sys.argv[1])
cpu = m.cpu(int(sys.argv[2]))
print("bound", os.getpid(), flush=True)
for line in sys.stdin:
    if line.strip() == "close":
        m.close()
        print("closed", flush=True)
    else:
        break
"""


@pytest.fixture
def small_machine() -> Iterator[Machine]:
    """A `host` machine with 2 CPUs, closed after the test."""
    with Machine.create("host", cpus=2) as m:
        yield m


# -- creation ------------------------------------------------------------------------------

def test_create_makes_shared_memory_and_starts_no_process() -> None:
    """Machine.create makes the machine's segments in /dev/shm (named after m.name) and starts
    no CPU process: this process has the same children before and after, but for its reaper
    (hw.reaper, started by the first create of a process, which is no CPU)."""
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)} - {reaper.pid()}
    with Machine.create("host", cpus=HOST_CPUS) as m:
        assert entries_of(m.name), f"no /dev/shm entry named {m.name}.*"
        assert entries_of(m.name) <= my_shm_entries()
        assert reaper.pid() is not None
        children_after = {p.pid for p in me.children(recursive=True)} - {reaper.pid()}
        assert children_after == children_before
    assert not entries_of(m.name)


@pytest.mark.parametrize("cpus", [1, 2, 3, HOST_CPUS])
def test_create_accepts_every_cpu_count_up_to_the_platform(cpus: int) -> None:
    """cpus may be anything in 1..the platform's CPU count; the machine then has exactly those
    CPU ids: the last one binds and answers RMI_VERSION, the next one is rejected."""
    with Machine.create("host", cpus=cpus) as m:
        assert m.cpus == cpus
        assert m.cpu(cpus - 1).smc(VERSION, V10)[0] == SUCCESS
        with pytest.raises(ValueError):
            m.cpu(cpus)


@pytest.mark.parametrize("cpus", [0, HOST_CPUS + 1, -1, True, "2", 2.0])
def test_create_rejects_cpus_out_of_range(cpus: object) -> None:
    """cpus outside 1..4 (or not an int) raises a ValueError naming the argument, the value and
    the valid range, and creates nothing in /dev/shm."""
    before = my_shm_entries()
    text = create_fails(ValueError, "host", cpus=cpus)
    assert "cpus" in text
    assert repr(cpus) in text or str(cpus) in text
    assert f"1..{HOST_CPUS}" in text
    assert my_shm_entries() == before


def test_create_rejects_unknown_platform_name_before_creating_anything() -> None:
    """An unknown platform name raises a ValueError naming the argument, the value and the
    bundled platforms to choose from; nothing appears in /dev/shm."""
    before = my_shm_entries()
    text = create_fails(ValueError, "no-such-platform", cpus=1)
    assert "platform" in text and "no-such-platform" in text
    assert "host" in text  # the valid choices are named
    assert my_shm_entries() == before


@pytest.mark.parametrize("platform", [123, None, b"host"])
def test_create_rejects_a_platform_that_is_no_name_or_path(platform: object) -> None:
    """A platform argument of another type is a ValueError naming the argument and the value
    (it used to be os.fspath's TypeError, naming neither); nothing appears in /dev/shm."""
    before = my_shm_entries()
    text = create_fails(ValueError, platform, cpus=1)
    assert f"platform = {platform!r}: expected a bundled platform name or the path of a .toml file" in text
    assert my_shm_entries() == before


def test_create_rejects_missing_platform_file_before_creating_anything(tmp_path: Path) -> None:
    """A path to a platform file that does not exist raises a ValueError naming the argument and
    the path; nothing appears in /dev/shm."""
    missing = tmp_path / "absent.toml"
    before = my_shm_entries()
    for arg in (str(missing), missing):
        text = create_fails(ValueError, arg, cpus=1)
        assert "platform" in text and str(missing) in text
    assert my_shm_entries() == before


def test_create_rejects_invalid_platform_file_before_creating_anything(tmp_path: Path) -> None:
    """A platform file whose cpus key is 0 raises a ValueError naming the file, the key, the
    value and the valid range; nothing appears in /dev/shm."""
    text = (platform_dir() / "host.toml").read_text()
    bad = re.sub(r"(?m)^cpus = 4\b", "cpus = 0", text)
    assert bad != text
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    before = my_shm_entries()
    message = create_fails(ValueError, str(path), cpus=1)
    # The key and value as one "cpus = 0": a bare "0" was always found in pytest's tmp path.
    line = bad.splitlines().index("cpus = 0") + 1
    assert message.startswith(f"{path}:{line}: cpus = 0: expected ") and "1..256" in message, message
    assert my_shm_entries() == before


def test_create_from_a_platform_file_path(tmp_path: Path) -> None:
    """A platform can be given as a path to a TOML file (str or Path); a copy of host.toml with
    2 CPUs gives a 2-CPU machine with host's DRAM."""
    text = (platform_dir() / "host.toml").read_text()
    path = tmp_path / "two.toml"
    path.write_text(re.sub(r"(?m)^cpus = 4\b", "cpus = 2", text))
    for arg in (str(path), path):
        with Machine.create(arg, cpus=2) as m:
            assert m.cpus == 2 and m.granule_count == 16384
            create_fails(ValueError, arg, cpus=3)


@pytest.mark.parametrize("cpu", [HOST_CPUS, -1, True, "0", 0.0])
def test_cpu_id_out_of_range_is_rejected(machine: Machine, cpu: object) -> None:
    """m.cpu(i) with i not in 0..3 raises a ValueError naming the argument, the value and the
    valid range, and binds nothing (CPU 0 is still free to bind afterwards)."""
    with pytest.raises(ValueError) as info:
        machine.cpu(cpu)  # type: ignore[arg-type]
    text = str(info.value)
    assert "cpu" in text and repr(cpu) in text and f"0..{HOST_CPUS - 1}" in text
    assert machine.cpu(0).smc(VERSION, V10)[0] == SUCCESS


# -- facts ----------------------------------------------------------------------------------

def test_machine_facts(machine: Machine) -> None:
    """The host machine states its facts: a unique name other processes can use, 4 KiB
    granules, granule-aligned DRAM base, at least 4,096 granules, 48-bit PAs, MMIO regions
    outside DRAM and below 2^48, Secure regions granule-aligned and inside DRAM."""
    assert isinstance(machine.name, str)
    assert re.fullmatch(rf"rmm-mp-{os.getpid()}-[0-9a-f]+", machine.name), machine.name
    assert machine.granule_size == 4096
    base = machine.dram_base
    assert base % 4096 == 0
    assert machine.granule_count >= 4096
    assert machine.pa_bits == 48
    end = base + machine.granule_count * machine.granule_size
    assert end <= 1 << machine.pa_bits
    assert len(machine.mmio_regions) >= 1
    for mbase, size in machine.mmio_regions:
        assert size > 0
        assert mbase + size <= base or mbase >= end, f"MMIO [{mbase:#x}, +{size:#x}) overlaps DRAM"
        assert mbase + size <= 1 << machine.pa_bits
    assert len(machine.secure_regions) >= 1
    for sbase, size in machine.secure_regions:
        assert size > 0 and sbase % 4096 == 0 and size % 4096 == 0
        assert base <= sbase and sbase + size <= end, f"Secure [{sbase:#x}, +{size:#x}) not in DRAM"


def test_machine_names_are_unique() -> None:
    """Two machines alive at once in one process have different names and different segments."""
    with Machine.create("host", cpus=1) as a, Machine.create("host", cpus=1) as b:
        assert a.name != b.name
        assert entries_of(a.name) and entries_of(b.name)
        assert not entries_of(a.name) & entries_of(b.name)


# -- binding -------------------------------------------------------------------------------

def test_cpu_returns_the_same_handle_twice(machine: Machine) -> None:
    """m.cpu(i) called twice in the same process returns the very same handle, and different
    CPUs get different handles."""
    first = machine.cpu(1)
    assert machine.cpu(1) is first
    assert machine.cpu(2) is not first
    assert first.smc(VERSION, V10)[0] == SUCCESS


def test_cpu_held_by_another_live_process_names_its_pid(small_machine: Machine) -> None:
    """While a subprocess that attached the machine holds CPU 1, m.cpu(1) raises an error that
    names the subprocess's pid; CPU 0 can still be bound here."""
    proc = start_child(BINDER, small_machine.name, "1")
    try:
        line = read_line(proc)
        assert line == f"bound {proc.pid}"
        with pytest.raises(CpuBusyError, match=f"^CPU 1 is bound to live process {proc.pid};") as info:
            small_machine.cpu(1)
        assert (info.value.cpu, info.value.pid) == (1, proc.pid)
        assert small_machine.cpu(0).smc(VERSION, V10)[0] == SUCCESS
    finally:
        finish(proc)


def test_closing_the_other_processes_machine_releases_its_cpu(small_machine: Machine) -> None:
    """A subprocess binds CPU 1 (m.cpu(1) fails here), then closes its machine handle while it
    keeps running: CPU 1 is free and binds here."""
    proc = start_child(BINDER, small_machine.name, "1")
    try:
        assert read_line(proc) == f"bound {proc.pid}"
        with pytest.raises(CpuBusyError, match=f"^CPU 1 is bound to live process {proc.pid};"):
            small_machine.cpu(1)
        tell(proc, "close")
        assert read_line(proc) == "closed"
        assert proc.poll() is None
        assert small_machine.cpu(1).smc(VERSION, V10)[0] == SUCCESS
    finally:
        finish(proc)


def test_process_ending_releases_its_cpu(small_machine: Machine) -> None:
    """A subprocess binds CPU 1 and ends normally without closing anything: CPU 1 binds here."""
    proc = start_child(BINDER, small_machine.name, "1")
    try:
        assert read_line(proc) == f"bound {proc.pid}"
        tell(proc, "")
        assert proc.wait(CHILD_TIMEOUT_S) == 0
        assert small_machine.cpu(1).smc(VERSION, V10)[0] == SUCCESS
    finally:
        finish(proc)


def test_binding_of_a_sigkilled_process_is_reclaimed(small_machine: Machine) -> None:
    """A subprocess binds CPU 1 and is killed with SIGKILL (and reaped), so it never released
    the binding: m.cpu(1) reclaims the CPU and its smc works."""
    proc = start_child(BINDER, small_machine.name, "1")
    try:
        assert read_line(proc) == f"bound {proc.pid}"
        with pytest.raises(CpuBusyError, match=f"^CPU 1 is bound to live process {proc.pid};"):
            small_machine.cpu(1)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(CHILD_TIMEOUT_S) == -signal.SIGKILL
        assert small_machine.cpu(1).smc(VERSION, V10)[0] == SUCCESS
    finally:
        finish(proc)


def test_binding_of_a_killed_unreaped_process_is_reclaimed(small_machine: Machine) -> None:
    """A subprocess binds CPU 1 and is killed with SIGKILL but not yet reaped (a zombie, as CPU
    processes are until their runtime joins them): the binding is reclaimed all the same."""
    proc = start_child(BINDER, small_machine.name, "1")
    try:
        assert read_line(proc) == f"bound {proc.pid}"
        os.kill(proc.pid, signal.SIGKILL)
        zombie = psutil.Process(proc.pid)
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while zombie.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.01)
        assert small_machine.cpu(1).smc(VERSION, V10)[0] == SUCCESS
    finally:
        finish(proc)


def test_a_live_holder_without_a_start_time_keeps_its_cpu(small_machine: Machine) -> None:
    """CPU 1 is bound by a live subprocess whose binding word has no start time (start part 0:
    a process that could not read its own, process.own_start_ms): its pid alone decides, so
    m.cpu(1) is refused naming it. The start time was compared all the same (0 against the
    real one), and the CPU was taken from its live holder."""
    proc = start_child("import sys; sys.stdin.readline()")
    try:
        area = small_machine.cpu_area(1)
        try:
            assert area.claim(0, cpuarea.binding_word(proc.pid, 0))
        finally:
            area.release()
        with pytest.raises(CpuBusyError, match=f"^CPU 1 is bound to live process {proc.pid};"):
            small_machine.cpu(1)
    finally:
        finish(proc)


def test_binding_of_a_dead_process_that_had_this_pid_is_reclaimed(machine: Machine) -> None:
    """CPU 1's binding word names this process's pid with a start time 1 s earlier: a dead
    process whose pid this one now has (pid reuse). It is reclaimed, not refused as this
    process's own binding through another Machine handle."""
    area = machine.cpu_area(1)
    try:
        stale = cpuarea.binding_word(os.getpid(), process.own_start_ms() - 1000)
        assert area.claim(0, stale)
    finally:
        area.release()
    assert machine.cpu(1).smc(VERSION, V10)[0] == SUCCESS


def test_a_binding_of_this_pid_without_a_start_time_is_refused_naming_no_live_process(machine: Machine) -> None:
    """CPU 1's binding word names this process's pid with no start time (start part 0): written
    by a dead process that had this pid and could not read its start time. Its pid alone decides,
    and it names this live process, so the CPU stays taken, but the error says that the holder is
    not this process rather than telling it to end "that process", itself."""
    area = machine.cpu_area(1)
    try:
        assert area.claim(0, cpuarea.binding_word(os.getpid(), 0))
    finally:
        area.release()
    with pytest.raises(CpuBusyError, match=f"^CPU 1 is bound to process {os.getpid()}, not this process but "
                                           "another that had its pid") as info:
        machine.cpu(1)
    assert "live process" not in str(info.value) and "end that process" not in str(info.value)


def test_a_process_without_a_start_time_refused_its_own_word_says_it_may_be_a_dead_ones(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process cannot read its own start time (process.own_start_ms gives 0), and CPU 1's
    binding word is the one it would write: a dead process that had this pid and could not read
    its start time either wrote it, or this process did through another Machine handle; nothing
    tells them apart. The error said that this process holds the CPU through another handle."""
    monkeypatch.setattr(process, "own_start_ms", lambda: 0)
    area = machine.cpu_area(1)
    try:
        assert area.claim(0, cpuarea.binding_word(os.getpid(), 0))
    finally:
        area.release()
    with pytest.raises(CpuBusyError, match=f"^CPU 1 is bound to process {os.getpid()}, this process's pid: this "
                                           "process through another Machine handle, or an ended process"):
        machine.cpu(1)


def test_closing_handles_releases_bindings_within_one_process(machine: Machine) -> None:
    """A second Machine object of the same machine in this process: CPU 1 bound through one is
    busy for the other (the error names this pid and says that it is this process, through
    another Machine handle, so that it does not read as some other process to end); closing the
    CPU handle, or the Machine handle, frees the CPU for the other."""
    other = Machine.attach(machine.name)
    try:
        held = other.cpu(1)
        with pytest.raises(CpuBusyError, match=f"^CPU 1 is bound to live process {os.getpid()} "
                                               r"\(this process, through another Machine handle") as info:
            machine.cpu(1)
        assert "end that process" not in str(info.value)
        held.close()
        held.close()  # idempotent
        assert machine.cpu(1).smc(VERSION, V10)[0] == SUCCESS

        other.cpu(2)
        with pytest.raises(CpuBusyError, match=f"^CPU 2 is bound to live process {os.getpid()} "):
            machine.cpu(2)
        other.close()
        assert machine.cpu(2).smc(VERSION, V10)[0] == SUCCESS
    finally:
        other.close()


def test_attaching_a_machine_of_another_layout_says_so(machine: Machine) -> None:
    """A machine whose control block has another layout version (as one made by an older
    rmm-mp, before the run queues moved): attaching it is refused, the error saying it was made
    by another rmm-mp version, with both layouts, not that it is no rmm-mp machine; with its
    magic gone too, the error says it is no rmm-mp machine. Before, both read "not an rmm-mp
    machine of layout N"."""
    version = machine.control.buf[8:12].tobytes()
    old = int.from_bytes(version, "little") - 1
    try:
        machine.control.buf[8:12] = old.to_bytes(4, "little")
        with pytest.raises(MachineError, match=f"made by another rmm-mp version: its control block has layout "
                                               f"{old}, and this rmm-mp reads layout {old + 1} only"):
            Machine.attach(machine.name)
        magic = machine.control.buf[0:8].tobytes()
        machine.control.buf[0:8] = b"NOTAMACH"
        try:
            with pytest.raises(MachineError, match="not an rmm-mp machine: its control block starts with b'NOTAMACH'"):
                Machine.attach(machine.name)
        finally:
            machine.control.buf[0:8] = magic
    finally:
        machine.control.buf[8:12] = version
    Machine.attach(machine.name).close()


def _in_forked_child(child: Callable[[], dict[str, object]]) -> dict[str, object]:
    """Run ``child`` in an os.fork child and return the report it made (JSON through a pipe).
    The child never returns into pytest: it leaves with os._exit(0), which the parent checks."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(reader)
            os.write(writer, json.dumps(child()).encode())
        finally:
            os._exit(0)
    os.close(writer)
    chunks = []
    while chunk := os.read(reader, 65536):
        chunks.append(chunk)
    os.close(reader)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    report: dict[str, object] = json.loads(b"".join(chunks))
    return report


# Python 3.12+ warns at os.fork in a process with more than one thread; under pytest-xdist the
# worker has execnet's I/O threads (plain pytest has none). The child only calls smc, writes
# to a pipe and leaves with os._exit, so the warning is noise in every `pytest -n` run.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_forked_child_cannot_use_the_parents_handle(machine: Machine) -> None:
    """After os.fork the child's smc on the parent's CPU 0 handle raises (and does not kill the
    machine); binding CPU 0 in the child names the parent's pid; the child can bind CPU 1 and
    use it. The parent's handle keeps working, and after the child exits CPU 1 binds here."""
    cpu0 = machine.cpu(0)
    assert cpu0.smc(VERSION, V10)[0] == SUCCESS

    def child() -> dict[str, object]:
        report: dict[str, object] = {}
        try:
            report["parent_handle"] = ["returned", list(cpu0.smc(VERSION, V10))]
        except BaseException as exc:
            report["parent_handle"] = [type(exc).__name__, str(exc)]
        try:
            machine.cpu(0)
            report["cpu0"] = ["bound", ""]
        except BaseException as exc:
            report["cpu0"] = [type(exc).__name__, str(exc)]
        try:
            report["cpu1"] = ["ok", list(machine.cpu(1).smc(VERSION, V10))]
        except BaseException as exc:
            report["cpu1"] = [type(exc).__name__, str(exc)]
        return report

    report = _in_forked_child(child)
    kind, detail = report["parent_handle"]
    assert kind not in ("returned", "RmmInternalError"), report
    kind, detail = report["cpu0"]
    assert kind != "bound" and str(os.getpid()) in detail, report
    assert report["cpu1"] == ["ok", [SUCCESS, V10, V10, 0, 0]], report
    assert not machine.dead
    assert cpu0.smc(VERSION, V10)[0] == SUCCESS
    assert machine.cpu(1).smc(VERSION, V10)[0] == SUCCESS


# As above: the child runs rmm_mp code and os._exit only.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
@pytest.mark.parametrize("how", ["attached", "creator-after-child-touched-the-machine"])
def test_a_forked_childs_refusal_names_the_pid_that_bound_the_handle(machine: Machine, how: str) -> None:
    """The refusal of a parent's CPU handle in a forked child names the process that bound it
    (this one), for a handle of an attached machine too, and whatever the child did first. (It
    named the machine's creator pid, or the word 'parent' for an attached machine or once the
    child had used the machine handle: "belongs to process parent".)"""
    m = Machine.attach(machine.name) if how == "attached" else machine
    try:
        cpu = m.cpu(2)
        assert cpu.smc(VERSION, V10)[0] == SUCCESS

        def child() -> dict[str, object]:
            if how != "attached":
                m.ns_read(m.dram_base, 1)
            try:
                cpu.smc(VERSION, V10)
                return {"error": ""}
            except MachineError as exc:
                return {"error": str(exc)}

        error = str(_in_forked_child(child)["error"])
        assert error.startswith(f"CPU 2 handle belongs to process {os.getpid()}; a forked child must "), error
    finally:
        if m is not machine:
            m.close()


# As above: the child runs rmm_mp code and os._exit only, none of another thread's.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
@pytest.mark.parametrize("first", ["ns_read", "ns_write", "ns_access"])
def test_a_forked_childs_first_ns_copy_locks_as_the_child(machine: Machine, first: str) -> None:
    """ns_read and ns_write test for a fork in place (a closed flag and a generation compare)
    before their copy: a forked child's first NS copy, whichever it is, must notice the fork
    and lock the granule as the child (host_owner of its pid), not with the parent's identity,
    and still copy the bytes; so must ns_access (the NsAccess a run loop made in the child
    copies through). The parent's own copies keep the parent's identity."""
    pa = machine.dram_base + 50 * machine.granule_size
    machine.ns_write(pa, b"parent")

    def child() -> dict[str, object]:
        report: dict[str, object] = {}
        try:
            if first == "ns_read":
                report["read"] = machine.ns_read(pa, 6).decode()
            elif first == "ns_access":
                ns = machine.ns_access()
                ns.write(pa, b"child!")
                report["same"] = ns is machine._host_ns
            else:
                machine.ns_write(pa, b"child!")
            report["owner"] = machine._host_ns.table.owner == host_owner(os.getpid())
        except BaseException as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
        return report

    report = _in_forked_child(child)
    assert report.get("owner") is True, report
    assert report.get("same", True) is True, report
    if first == "ns_read":
        assert report["read"] == "parent", report
    else:
        assert machine.ns_read(pa, 6) == b"child!"
    assert machine._host_ns.table.owner == host_owner(os.getpid())

# -- smc arguments and results -----------------------------------------------------------------

@pytest.mark.parametrize("x4, stored", [
    (-1, U64), (-3, U64 - 2), (-(1 << 63), 1 << 63), (U64, U64), ((1 << 63) - 1, (1 << 63) - 1),
    (0x1234, 0x1234), (0, 0),
])
def test_smc_stores_registers_modulo_2_64(cpu0: Cpu, x4: int, stored: int) -> None:
    """A register value in [-2^63, 2^64) is stored modulo 2^64: an SMC outside the RMI range
    (PSCI_VERSION) returns SMC_UNKNOWN with X1..X4 as the CPU saw them, and RMI_VERSION reads
    X1 = -1 as 0xFFFF_FFFF_FFFF_FFFF, which is not 1.0."""
    assert cpu0.smc(PSCI_VERSION, x4, 0, 0, x4) == (SMC_UNKNOWN, stored, 0, 0, stored)
    assert cpu0.smc(VERSION, -1, 0, 0, x4) == (ERROR_INPUT, V10, V10, 0, 0)
    assert cpu0.smc(VERSION, x4, 0, 0, x4)[0] == (SUCCESS if stored == V10 else ERROR_INPUT)


def test_smc_stores_x5_and_x6_modulo_2_64(cpu0: Cpu) -> None:
    """X5 and X6 (not results of any RMI command) are stored modulo 2^64 too: EL3's saved
    Non-secure context of the CPU shows them after the call, X0..X4 being the results."""
    result = cpu0.smc(VERSION, V10, 0, 0, -2, -5, -(1 << 63))
    assert result == (SUCCESS, V10, V10, 0, 0)
    saved = [int.from_bytes(cpu0.area.buf[OFF_NS_CTX + 8 * i:OFF_NS_CTX + 8 * i + 8], "little") for i in range(7)]
    assert saved[:5] == list(result)
    assert saved[5:] == [U64 - 4, 1 << 63]


def test_smc_missing_registers_are_zero(cpu0: Cpu) -> None:
    """Registers the caller leaves out are 0, not whatever the previous call passed: after a
    call with X4 = 0x1234, a call with X1 only returns X4 = 0, and RMI_VERSION with no X1 at
    all is a request for version 0 (which fails with lower = higher = 1.0)."""
    assert cpu0.smc(PSCI_VERSION, 5, 7, 8, 0x1234, 9, 10) == (SMC_UNKNOWN, 5, 7, 8, 0x1234)
    assert cpu0.smc(PSCI_VERSION, 5) == (SMC_UNKNOWN, 5, 0, 0, 0)
    assert cpu0.smc(PSCI_VERSION, 0, 0, 0, -1)[4] == U64
    assert cpu0.smc(VERSION, V10) == (SUCCESS, V10, V10, 0, 0)
    assert cpu0.smc(VERSION) == (ERROR_INPUT, V10, V10, 0, 0)


def test_smc_u64_is_smc_of_three_words(cpu0: Cpu) -> None:
    """Cpu.smc_u64(fid, x1, x2), the run loop's entry for REC_ENTER, is smc(fid, x1, x2) for
    values already in [0, 2^64): the same results, X3..X6 zero after a call that set them, and
    the same Non-secure context saved."""
    assert cpu0.smc(PSCI_VERSION, 5, 7, 8, 0x1234, 9, 10) == (SMC_UNKNOWN, 5, 7, 8, 0x1234)
    assert cpu0.smc_u64(PSCI_VERSION, 5, U64) == cpu0.smc(PSCI_VERSION, 5, U64) == (SMC_UNKNOWN, 5, U64, 0, 0)
    saved = cpu0.area.buf[OFF_NS_CTX:OFF_NS_CTX + 56].tobytes()
    assert cpu0.smc_u64(VERSION, V10, 0) == cpu0.smc(VERSION, V10) == (SUCCESS, V10, V10, 0, 0)
    assert cpu0.smc_u64(PSCI_VERSION, 5, U64) == (SMC_UNKNOWN, 5, U64, 0, 0)
    assert cpu0.area.buf[OFF_NS_CTX:OFF_NS_CTX + 56].tobytes() == saved


class _IndexOnly:
    """An integer-like object that is no int (as numpy's int64 and uint64 are): it has __index__."""

    def __index__(self) -> int:
        return 5

    def __repr__(self) -> str:
        return "_IndexOnly()"


@pytest.mark.parametrize("bad", [1.0, "1", None, True, False, b"\x01", 1j, _IndexOnly()])
@pytest.mark.parametrize("position", [0, 1, 4, 6])
def test_smc_rejects_non_int_registers_with_type_error(cpu0: Cpu, bad: object, position: int) -> None:
    """A register (the FID or any of X1..X6) that is not an int - float, str, None, bool,
    bytes, complex, an integer-like object with __index__ - raises TypeError and the machine
    stays alive."""
    regs: list[object] = [VERSION, V10, 0, 0, 0, 0, 0]
    regs[position] = bad
    with pytest.raises(TypeError):
        cpu0.smc(*regs)
    assert not cpu0.machine.dead
    assert cpu0.smc(VERSION, V10)[0] == SUCCESS


@pytest.mark.parametrize("bad", [1 << 64, -(1 << 63) - 1, 1 << 100, -(1 << 100)])
@pytest.mark.parametrize("position", [0, 1, 4, 6])
def test_smc_rejects_out_of_range_registers_with_value_error(cpu0: Cpu, bad: int, position: int) -> None:
    """An int register outside [-2^63, 2^64) (2^64, -2^63 - 1, and far beyond) raises
    ValueError and the machine stays alive."""
    regs: list[int] = [VERSION, V10, 0, 0, 0, 0, 0]
    regs[position] = bad
    with pytest.raises(ValueError):
        cpu0.smc(*regs)
    assert not cpu0.machine.dead
    assert cpu0.smc(VERSION, V10)[0] == SUCCESS


def test_smc_rejects_more_than_six_registers(cpu0: Cpu) -> None:
    """smc takes X1..X6 after the FID; a seventh argument raises TypeError; six are fine."""
    with pytest.raises(TypeError):
        cpu0.smc(VERSION, V10, 0, 0, 0, 0, 0, 0)
    assert cpu0.smc(VERSION, V10, 0, 0, 0, 0, 0) == (SUCCESS, V10, V10, 0, 0)


def test_smc_accepts_int_enum_fid(cpu0: Cpu) -> None:
    """The FID may be given as the RmiFid enum member or its int value, with the same result."""
    assert cpu0.smc(RmiFid.RMI_VERSION, V10) == cpu0.smc(VERSION, V10) == (SUCCESS, V10, V10, 0, 0)


def test_smc_results_are_exactly_five_ints(machine: Machine) -> None:
    """Whatever path a call takes (success, RMI failure, DELEGATE/UNDELEGATE, FEATURES, an
    ID EL3 does not forward, an unused RMI ID), the result is a tuple of exactly five plain
    ints, each a 64-bit register value."""
    cpu = machine.cpu(0)
    pa = machine.dram_base + 5 * machine.granule_size
    calls = [
        (VERSION, V10), (RmiFid.RMI_VERSION, -1), (FEATURES, 0), (FEATURES, 1),
        (DELEGATE, pa), (DELEGATE, pa), (UNDELEGATE, pa), (DELEGATE, 1),
        (0x8400_0000, -1, -2, -3, -4), (0xC400_018F, 1, 2, 3, 4), (-1,),
    ]
    for call in calls:
        result = cpu.smc(*call)
        assert isinstance(result, tuple) and len(result) == 5, (call, result)
        for value in result:
            assert type(value) is int and 0 <= value <= U64, (call, result)


def test_smc_routing_of_non_rmi_ids(cpu0: Cpu) -> None:
    """The host may call RMI IDs only: with the SVE hint bit 16 set RMI_VERSION still works;
    its SMC32 form, a PSCI ID, an RSI ID and an unused RMI offset return SMC_UNKNOWN."""
    hint = 1 << 16
    assert cpu0.smc(VERSION | hint, V10)[:3] == (SUCCESS, V10, V10)
    for fid in (VERSION & ~(1 << 30), 0x8400_0000, 0xC400_0003, 0xC400_0190, 0xC400_018F, 0xC400_0160):
        assert cpu0.smc(fid, V10)[0] == SMC_UNKNOWN, hex(fid)
    assert not cpu0.machine.dead


def test_smc_fid_is_w0_and_reserved_bits_are_no_rmi_id(cpu0: Cpu) -> None:
    """SMCCC passes the function ID in W0: X0 bits [63:32] set (any of them) leave RMI_VERSION
    working. Bits [23:17] are no part of any ID (SMCCC: reserved), so RMI_VERSION with one of
    them set, like RSI_VERSION with the SVE hint, returns SMC_UNKNOWN."""
    for high in (1 << 32, 0xFFFF_FFFF << 32):
        assert cpu0.smc(VERSION | high, V10)[:3] == (SUCCESS, V10, V10), hex(high)
    for fid in (VERSION | 1 << 17, VERSION | 1 << 23, 0xC401_0190):
        assert cpu0.smc(fid, V10)[0] == SMC_UNKNOWN, hex(fid)


# -- RMM bugs are not statuses ---------------------------------------------------------------

def _boom(rmm, req):  # type: ignore[no-untyped-def]
    raise RuntimeError("handler exploded")


def _invariant(rmm, req):  # type: ignore[no-untyped-def]
    raise RmmInternalError("an internal invariant is broken")


def _negative(rmm, req):  # type: ignore[no-untyped-def]
    return (-1,)        # X1 = -1: no 64-bit register value


def _too_wide(rmm, req):  # type: ignore[no-untyped-def]
    return (0, 1 << 64)


def _not_a_number(rmm, req):  # type: ignore[no-untyped-def]
    return ("ten",)


@pytest.mark.parametrize("recording", [True, False], ids=["timed", "untimed"])
@pytest.mark.parametrize("handler, what", [(_boom, "handler exploded"), (_invariant, "invariant is broken"),
                                           (_negative, "error"), (_too_wide, "error"), (_not_a_number, "error")])
def test_handler_exception_is_rmm_internal_error_and_kills_the_machine(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, handler, what: str,  # type: ignore[no-untyped-def]
        recording: bool) -> None:
    """RMI_VERSION's handler raises (an arbitrary exception, or RmmInternalError for a broken
    invariant), or returns results that are no 64-bit register values (these used to escape as
    a bare struct.error, the machine left alive): cpu.smc raises RmmInternalError naming the FID, the arguments and the CPU; the
    machine is marked dead with that reason; every later smc, on any CPU and any FID, raises
    RmmInternalError, also through a Machine attached afterwards and after the handler is
    repaired. The same through EL3's timed entry and its untimed one (recording off)."""
    monkeypatch.setitem(dispatch.COMMANDS, RmiFid.RMI_VERSION,
                        dispatch.Command(RmiFid.RMI_VERSION, handler, 1, 2))
    cpu2 = machine.cpu(2)
    cpu2.set_recording(recording)
    assert not machine.dead
    assert machine.dead_reason == ""
    with pytest.raises(RmmInternalError) as info:
        cpu2.smc(VERSION, 0xABCDEF, 0x42, 0, -1)
    text = str(info.value)
    assert f"{VERSION:#x}" in text.lower()
    assert "0xabcdef" in text.lower() and "0x42" in text.lower() and f"{U64:#x}" in text.lower()
    assert "CPU 2" in text
    assert what in text
    assert machine.dead
    assert "CPU 2" in machine.dead_reason and f"{VERSION:#x}" in machine.dead_reason.lower()

    monkeypatch.undo()
    for cpu_id, fid, args in ((2, VERSION, (V10,)), (0, FEATURES, (0,)), (1, 0x8400_0000, ()),
                              (1, DELEGATE, (machine.dram_base,))):
        with pytest.raises(RmmInternalError):
            machine.cpu(cpu_id).smc(fid, *args)
    with pytest.raises(RmmInternalError):      # the run loop's entry (REC_ENTER) checks it too
        machine.cpu(0).smc_u64(DELEGATE, machine.dram_base, 0)
    other = Machine.attach(machine.name)
    try:
        assert other.dead
        assert other.dead_reason == machine.dead_reason
        with pytest.raises(RmmInternalError):
            other.cpu(3).smc(VERSION, V10)
    finally:
        other.close()


def _interrupt(rmm, req):  # type: ignore[no-untyped-def]
    raise KeyboardInterrupt


def test_a_crash_being_recorded_is_waited_for(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU calling smc while another CPU is between claiming the crash and writing its
    reason gets that reason, not an empty RmmInternalError (it used to read the reason's
    length before it was stored). A claim whose reason never comes (the recording CPU died)
    gives a reason that says so, after control.REASON_WAIT_S."""
    import threading
    from rmm_mp.hw import control
    ctl = machine.control
    monkeypatch.setattr(control, "REASON_WAIT_S", 60.0)     # the writer's 50 ms, however loaded the host
    ctl.view.store_u32(control.OFF_DEAD, 2)             # claimed: the reason is being written

    def finish_recording() -> None:
        time.sleep(0.05)
        data = b"RMI_VERSION: ValueError on CPU 3"
        ctl.buf[control.OFF_REASON:control.OFF_REASON + len(data)] = data
        ctl.view.store_u32(control.OFF_DEAD_LEN, len(data))
        ctl.view.store_u32(control.OFF_DEAD, 1)

    writer = threading.Thread(target=finish_recording)
    writer.start()
    try:
        with pytest.raises(RmmInternalError, match="^RMI_VERSION: ValueError on CPU 3$"):
            machine.cpu(0).smc(VERSION, RMI_ABI_VERSION)
    finally:
        writer.join()
    ctl.view.store_u32(control.OFF_DEAD, 2)
    monkeypatch.setattr(control, "REASON_WAIT_S", 0.05)
    assert "has not recorded its reason" in machine.dead_reason


@pytest.mark.parametrize("recording", [True, False], ids=["timed", "untimed"])
def test_interrupt_inside_a_handler_propagates_and_kills_the_machine(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, recording: bool) -> None:
    """Ctrl-C inside a handler (which may leave locks and state half done) reaches the caller
    as KeyboardInterrupt, not as an RmmInternalError, and the machine is marked dead with a
    reason that says it was interrupted, on which CPU and in which call."""
    monkeypatch.setitem(dispatch.COMMANDS, RmiFid.RMI_VERSION,
                        dispatch.Command(RmiFid.RMI_VERSION, _interrupt, 1, 2))
    cpu1 = machine.cpu(1)
    cpu1.set_recording(recording)
    with pytest.raises(KeyboardInterrupt):
        cpu1.smc(VERSION, V10)
    assert machine.dead
    assert "interrupted (KeyboardInterrupt)" in machine.dead_reason and "CPU 1" in machine.dead_reason
    assert f"{VERSION:#x}" in machine.dead_reason.lower()
    monkeypatch.undo()
    with pytest.raises(RmmInternalError):
        machine.cpu(0).smc(VERSION, V10)


def test_crash_on_one_machine_leaves_another_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dead flag belongs to one machine: after machine A's RMM crashes, machine B created
    in the same process still serves smc."""
    with Machine.create("host", cpus=1) as a, Machine.create("host", cpus=1) as b:
        with monkeypatch.context() as patch:
            patch.setitem(dispatch.COMMANDS, RmiFid.RMI_VERSION,
                          dispatch.Command(RmiFid.RMI_VERSION, _boom, 1, 2))
            with pytest.raises(RmmInternalError):
                a.cpu(0).smc(VERSION, V10)
        assert a.dead and not b.dead
        assert b.cpu(0).smc(VERSION, V10)[0] == SUCCESS


# -- NS memory -----------------------------------------------------------------------------

def _secure(m: Machine, pa: int) -> bool:
    return any(base <= pa < base + size for base, size in m.secure_regions)


def _last_ns_end(m: Machine) -> int:
    """The end of the last NS granule of DRAM (the host platform's Secure region may end DRAM)."""
    pa = m.dram_base + m.granule_count * m.granule_size
    while _secure(m, pa - 1):
        pa -= m.granule_size
    return pa


def test_ns_write_and_read_round_trip(machine: Machine) -> None:
    """ns_write then ns_read of NS DRAM (within a granule, across granules, the first byte of
    DRAM, the last NS byte before the Secure region, several granules at once) returns the
    bytes written, and the raw DRAM view holds them."""
    g = machine.granule_size
    sec_base, _ = machine.secure_regions[0]
    cases = [
        (machine.dram_base, b"\x01\x02\x03"),
        (machine.dram_base + 7 * g + 100, bytes(range(256))),
        (machine.dram_base + 9 * g - 5, b"straddling two granules"),
        (machine.dram_base + 20 * g, bytes([0xA5]) * (3 * g)),
        (sec_base - 4, b"edge"),
        (_last_ns_end(machine) - 4, b"last"),
    ]
    for pa, data in cases:
        machine.ns_write(pa, data)
        assert machine.ns_read(pa, len(data)) == data
        assert machine.memory.read(pa, len(data)) == data
    machine.ns_write(machine.dram_base + 30 * g, bytearray(b"ba"))
    machine.ns_write(machine.dram_base + 31 * g, memoryview(b"mv"))
    assert machine.ns_read(machine.dram_base + 30 * g, 2) == b"ba"
    assert machine.ns_read(machine.dram_base + 31 * g, 2) == b"mv"


def test_ns_write_of_a_memoryview_writes_its_bytes(machine: Machine) -> None:
    """A memoryview of 8-byte items, or a 2-D one, is written as its bytes, and the fault check
    covers all of them. (len() of a 'Q' view counts items: the range check covered an eighth of
    the bytes and the copy failed with "lvalue and rvalue have different structures".) A byte
    view with gaps writes the bytes it shows; one of larger items with gaps is refused as a
    TypeError naming its shape, and nothing is written."""
    g = machine.granule_size
    words = memoryview(bytearray(range(16)) * 2).cast("Q")
    machine.ns_write(machine.dram_base + 40 * g, words)
    assert machine.ns_read(machine.dram_base + 40 * g, 32) == bytes(range(16)) * 2
    square = memoryview(bytearray(b"abcdef")).cast("B", (2, 3))
    machine.ns_write(machine.dram_base + 41 * g, square)
    assert machine.ns_read(machine.dram_base + 41 * g, 6) == b"abcdef"
    sec_base, _ = machine.secure_regions[0]
    with pytest.raises(GranuleProtectionFault):
        machine.ns_write(sec_base - 8, memoryview(bytearray(16)).cast("Q"))     # the 9th byte is Secure
    assert machine.memory.read(sec_base - 8, 8) == bytes(8)
    machine.ns_write(machine.dram_base + 42 * g, memoryview(b"abcdef")[::2])
    assert machine.ns_read(machine.dram_base + 42 * g, 4) == b"ace\0"
    with pytest.raises(TypeError, match=r"contiguous memoryview, got one of shape \(2,\)"):
        machine.ns_write(machine.dram_base + 43 * g, memoryview(bytearray(b"x" * 32)).cast("Q")[::2])
    assert machine.ns_read(machine.dram_base + 43 * g, 32) == bytes(32)


def _faulting_ranges(m: Machine, delegated: int) -> list[tuple[str, int, int]]:
    """(what, pa, size) ranges with at least one byte outside NS DRAM."""
    g = m.granule_size
    base = m.dram_base
    end = base + m.granule_count * g
    mmio_base, mmio_size = m.mmio_regions[0]
    sec_base, sec_size = m.secure_regions[0]
    ranges = [
        ("below DRAM", base - 16, 8),
        ("straddling the start of DRAM", base - 2, 4),
        ("at PA 0", 0, 4),
        ("MMIO", mmio_base, 4),
        ("end of MMIO", mmio_base + mmio_size - 4, 4),
        ("at the end of DRAM", end, 4),
        ("straddling the end of DRAM", end - 2, 4),
        ("far beyond DRAM", 1 << m.pa_bits, 4),
        ("Secure", sec_base, 4),
        ("straddling into Secure", sec_base - 2, 4),
        ("two NS granules then Secure", sec_base - 2 * g, 2 * g + 1),
        ("delegated", delegated, 4),
        ("straddling into a delegated granule", delegated - 2, 4),
        ("straddling out of a delegated granule", delegated + g - 2, 4),
        ("NS, delegated, NS", delegated - g, 3 * g),
    ]
    if sec_base + sec_size < end:
        ranges.append(("straddling out of Secure", sec_base + sec_size - 2, 4))
    ns_end = _last_ns_end(m)
    if ns_end < end:  # DRAM ends in the Secure region: NS bytes, then Secure, then past DRAM
        ranges.append(("from NS over Secure past the end of DRAM", ns_end - 2, end - ns_end + 4))
    return ranges


def _prepare_fault_ranges(m: Machine) -> int:
    """Fill NS DRAM around every boundary with a pattern; delegate one granule; return its PA."""
    g = m.granule_size
    sec_base, sec_size = m.secure_regions[0]
    delegated = m.dram_base + 40 * g
    for pa in (m.dram_base, _last_ns_end(m) - g, sec_base - 2 * g, sec_base - g, sec_base + sec_size,
               delegated - g, delegated + g):
        if m.dram_base <= pa < _last_ns_end(m) and not _secure(m, pa):
            m.ns_write(pa, bytes([0x5A]) * g)
    assert m.cpu(0).smc(DELEGATE, delegated)[0] == SUCCESS
    return delegated


def _window(m: Machine, pa: int, size: int) -> list[tuple[int, bytes]]:
    """Raw DRAM bytes from one granule before to one granule after [pa, pa + size), DRAM only."""
    g = m.granule_size
    lo = max(pa - g, m.dram_base)
    hi = min(pa + size + g, m.dram_base + m.granule_count * g)
    return [(lo, m.memory.read(lo, hi - lo))] if lo < hi else []


def test_ns_write_outside_ns_dram_faults_and_changes_nothing(machine: Machine) -> None:
    """ns_write of a range with any byte outside DRAM (below it, MMIO, at or past its end, at
    2^pa_bits) or outside the Non-secure PAS (Secure region, delegated granule), including
    ranges whose first bytes are NS DRAM, raises GranuleProtectionFault and changes nothing:
    the raw DRAM around the range, every granule's lock and state word and the GPT are as
    before, and the NS bytes next to the range are still writable."""
    delegated = _prepare_fault_ranges(machine)
    g = machine.granule_size
    for what, pa, size in _faulting_ranges(machine, delegated):
        window = _window(machine, pa, size)
        before = snapshot(machine, delegated)
        with pytest.raises(GranuleProtectionFault):
            machine.ns_write(pa, b"\xEE" * size)
        assert before.diff(snapshot(machine, delegated)) == [], what
        assert all(machine.memory.read(lo, len(data)) == data for lo, data in window), what
    # No granule lock was left held: the NS neighbours can be written and delegated.
    machine.ns_write(delegated - 1, b"\x01")
    assert machine.cpu(0).smc(DELEGATE, delegated - g)[0] == SUCCESS
    assert machine.cpu(0).smc(UNDELEGATE, delegated - g)[0] == SUCCESS


def test_ns_read_outside_ns_dram_faults_and_changes_nothing(machine: Machine) -> None:
    """ns_read of a range with any byte outside DRAM or outside the Non-secure PAS raises
    GranuleProtectionFault and leaves the footprint (locks, states, GPT, contents) unchanged."""
    delegated = _prepare_fault_ranges(machine)
    for what, pa, size in _faulting_ranges(machine, delegated):
        before = snapshot(machine, delegated, delegated - machine.granule_size)
        with pytest.raises(GranuleProtectionFault):
            machine.ns_read(pa, size)
        assert before.diff(snapshot(machine, delegated, delegated - machine.granule_size)) == [], what
    assert machine.ns_read(delegated - 4, 4) == b"\x5A" * 4


def test_ns_access_past_the_end_of_dram_faults_when_dram_ends_non_secure(tmp_path: Path) -> None:
    """On a platform whose last DRAM granule is NS (host.toml with the Secure region moved to
    the middle of DRAM), an access that starts in NS DRAM and runs past its end raises
    GranuleProtectionFault for ns_read and ns_write, and the NS bytes are left as they were."""
    text = (platform_dir() / "host.toml").read_text()
    moved = re.sub(r"(?m)^base = 0x83F0_0000", "base = 0x8100_0000", text)
    assert moved != text
    path = tmp_path / "ns_end.toml"
    path.write_text(moved)
    with Machine.create(path, cpus=1) as m:
        end = m.dram_base + m.granule_count * m.granule_size
        assert not _secure(m, end - 1)
        m.ns_write(end - 8, b"tail-end")
        for pa, size in ((end - 8, 9), (end - 1, 2), (end - m.granule_size, 2 * m.granule_size)):
            with pytest.raises(GranuleProtectionFault):
                m.ns_write(pa, b"\xEE" * size)
            with pytest.raises(GranuleProtectionFault):
                m.ns_read(pa, size)
            assert m.memory.read(end - 8, 8) == b"tail-end"
        assert m.ns_read(end - 8, 8) == b"tail-end"


def test_ns_access_works_again_after_undelegate(machine: Machine) -> None:
    """A granule is NS, then delegated (host access faults; the raw contents are zero, not the
    host's bytes), then undelegated (host access works again and reads zeros)."""
    pa = machine.dram_base + 50 * machine.granule_size
    machine.ns_write(pa, b"host secret")
    cpu = machine.cpu(0)
    assert cpu.smc(DELEGATE, pa)[0] == SUCCESS
    with pytest.raises(GranuleProtectionFault):
        machine.ns_write(pa, b"again")
    with pytest.raises(GranuleProtectionFault):
        machine.ns_read(pa, 1)
    assert machine.memory.read(pa, 11) == bytes(11)
    assert cpu.smc(UNDELEGATE, pa)[0] == SUCCESS
    assert machine.ns_read(pa, 11) == bytes(11)
    machine.ns_write(pa, b"mine again")
    assert machine.ns_read(pa, 10) == b"mine again"


def test_ns_access_of_no_bytes_faults_nowhere_and_changes_nothing(machine: Machine) -> None:
    """The fault rule is about bytes ("if any byte lies outside DRAM or outside the Non-secure
    PAS"): an access of no bytes has none outside, so ns_read(pa, 0) returns b"" and
    ns_write(pa, b"") returns wherever pa is - NS DRAM, Secure, MMIO, a delegated granule, past
    DRAM, a negative or a 65-bit PA - and neither changes any lock, state, GPT entry or byte."""
    g = machine.granule_size
    delegated = machine.dram_base + 60 * g
    assert machine.cpu(0).smc(DELEGATE, delegated)[0] == SUCCESS
    places = [machine.dram_base, machine.secure_regions[0][0], machine.mmio_regions[0][0], delegated,
              machine.dram_base + machine.granule_count * g, -1, 1 << 64]
    for pa in places:
        before = snapshot(machine, delegated)
        assert machine.ns_read(pa, 0) == b"", hex(pa)
        assert machine.ns_write(pa, b"") is None, hex(pa)
        assert before.diff(snapshot(machine, delegated)) == [], hex(pa)


def test_ns_access_at_a_negative_pa_faults_and_a_negative_size_is_a_value_error(machine: Machine) -> None:
    """A negative PA lies outside DRAM: ns_read and ns_write there raise GranuleProtectionFault
    (not an IndexError or a wrapped-around address). A negative size is no byte count at all:
    ValueError naming it, from ns_read; nothing is read."""
    for pa, size in ((-1, 1), (-5, 8), (-(1 << 63), 4096)):
        with pytest.raises(GranuleProtectionFault):
            machine.ns_read(pa, size)
        with pytest.raises(GranuleProtectionFault):
            machine.ns_write(pa, b"\xEE" * size)
    with pytest.raises(ValueError, match=r"^size = -1: expected a byte count >= 0$"):
        machine.ns_read(machine.dram_base + 4096, -1)
    machine.ns_write(machine.dram_base + 61 * 4096, b"still")
    assert machine.ns_read(machine.dram_base + 61 * 4096, 5) == b"still"


# -- attach and lifetime ------------------------------------------------------------------------

def test_attach_in_the_same_process_shares_memory_and_unlinks_nothing(machine: Machine) -> None:
    """Machine.attach(m.name) in the same process sees the same facts and the same NS memory
    both ways; closing it (twice) unlinks no segment and the creator keeps working."""
    segments = entries_of(machine.name)
    other = Machine.attach(machine.name)
    try:
        assert other.name == machine.name
        assert (other.granule_count, other.dram_base, other.pa_bits) == \
               (machine.granule_count, machine.dram_base, machine.pa_bits)
        assert other.mmio_regions == machine.mmio_regions
        assert other.secure_regions == machine.secure_regions
        machine.ns_write(machine.dram_base + 100, b"from creator")
        assert other.ns_read(machine.dram_base + 100, 12) == b"from creator"
        other.ns_write(machine.dram_base + 200, b"from attacher")
        assert machine.ns_read(machine.dram_base + 200, 13) == b"from attacher"
        assert other.cpu(3).smc(VERSION, V10)[0] == SUCCESS
    finally:
        other.close()
        other.close()
    assert entries_of(machine.name) == segments
    assert machine.ns_read(machine.dram_base + 200, 13) == b"from attacher"
    assert machine.cpu(3).smc(VERSION, V10)[0] == SUCCESS


ATTACH_AND_REPORT = r"""
import json, sys
from rmm_mp import Machine
m = Machine.attach(sys.argv[1])
data = m.ns_read(int(sys.argv[2]), 5).hex()
m.ns_write(int(sys.argv[2]) + 8, b"child")
regs = list(m.cpu(1).smc(0xC4000150, 0x10000))
print(json.dumps({"name": m.name, "granules": m.granule_count, "data": data, "regs": regs}), flush=True)
m.close()
"""


def test_attach_from_another_process(small_machine: Machine) -> None:
    """A subprocess attaches by name, reads what the creator wrote, writes NS memory the creator
    then reads, calls RMI_VERSION on CPU 1, and exits: nothing is unlinked and CPU 1 binds
    here afterwards."""
    m = small_machine
    pa = m.dram_base + 3 * m.granule_size
    m.ns_write(pa, b"hello")
    segments = entries_of(m.name)
    proc = start_child(ATTACH_AND_REPORT, m.name, str(pa))
    try:
        report = json.loads(read_line(proc))
        assert proc.wait(CHILD_TIMEOUT_S) == 0
    finally:
        finish(proc)
    assert report == {"name": m.name, "granules": m.granule_count, "data": b"hello".hex(),
                      "regs": [SUCCESS, V10, V10, 0, 0]}
    assert m.ns_read(pa + 8, 5) == b"child"
    assert entries_of(m.name) == segments
    assert m.cpu(1).smc(VERSION, V10)[0] == SUCCESS


@pytest.mark.parametrize("name", ["rmm-mp-1-00000000", "rmm-mp-999999999-deadbeef"])
def test_attach_of_an_unknown_name_raises(name: str) -> None:
    """Machine.attach of a well-formed name no machine has raises MachineError naming it."""
    with pytest.raises(MachineError) as info:
        Machine.attach(name)
    assert str(info.value).startswith(f"no machine named {name!r} "), str(info.value)


@pytest.mark.parametrize("name", ["not-a-machine", "", "rmm-mp-1/x", "rmm-mp-01-0a1b2c3d", "rmm-mp-1-0A1B2C3D",
                                  "rmm-mp-\u0661-0a1b2c3d", "rmm-mp-x"])
def test_attach_of_a_name_that_is_no_machine_name_is_a_value_error(name: str) -> None:
    """A name that is not of the rmm-mp-<pid>-<hex> form is a bad argument: ValueError naming
    it, as Machine.create does for its arguments (no file is looked up). The form is the one
    `rmm-mp check` and `rmm-mp clean` take (a pid with a leading 0 or in other digits, or upper-case
    hex was looked for: "no machine named")."""
    with pytest.raises(ValueError, match=re.escape(f"name = {name!r}: expected a machine name")):
        Machine.attach(name)


def test_attach_of_a_name_no_file_can_hold_or_of_a_truncated_machine_is_a_machine_error() -> None:
    """A name too long for the file system, and an empty control segment (a machine whose
    creator died while making it), raise MachineError naming the machine and the reason, as
    `rmm-mp check` shows it (an OSError or ValueError escaped before: a traceback)."""
    long = "rmm-mp-" + "9" * 300 + "-deadbeef"
    with pytest.raises(MachineError, match="File name too long"):
        Machine.attach(long)
    name = "rmm-mp-1-0badc0de"
    path = Path(segment.SHM_DIR) / f"{name}.ctl"
    path.touch()
    try:
        with pytest.raises(MachineError, match=f"'{name}' can be attached: its ctl segment in {segment.SHM_DIR}: "):
            Machine.attach(name)
    finally:
        path.unlink()


def test_attach_after_the_creator_closed_raises() -> None:
    """Once the creator has closed a machine, attaching its name raises."""
    with Machine.create("host", cpus=1) as m:
        name = m.name
    assert not entries_of(name)
    with pytest.raises(MachineError, match=re.escape(f"no machine named {name!r} in {segment.SHM_DIR} (it was closed")):
        Machine.attach(name)


def test_close_is_idempotent_and_unlinks_everything() -> None:
    """The creator's close() removes every segment of the machine; a second close() is a no-op;
    using the closed machine raises instead of touching unmapped memory."""
    m = Machine.create("host", cpus=2)
    try:
        cpu = m.cpu(0)
        assert entries_of(m.name)
    finally:
        m.close()
    assert not entries_of(m.name)
    m.close()
    with pytest.raises(MachineError, match=f"^machine {m.name} is closed$"):
        m.ns_read(m.dram_base, 1)
    with pytest.raises(MachineError, match=f"^machine {m.name} is closed$"):
        m.cpu(1)
    with pytest.raises(MachineError, match="^CPU 0 handle is closed$"):
        cpu.smc(VERSION, V10)
    with pytest.raises(MachineError, match="^CPU 0 handle is closed$"):
        cpu.smc_u64(VERSION, V10, 0)


def _interrupt_first_unlink(monkeypatch: pytest.MonkeyPatch, then: "object") -> list[str]:
    """Make the first Segment.unlink call ``then`` (a callable) instead of unlinking; returns
    the paths unlink was asked for."""
    asked: list[str] = []
    real = segment.Segment.unlink

    def unlink(self: segment.Segment) -> None:
        asked.append(self.path)
        if len(asked) == 1:
            then()  # type: ignore[operator]
        real(self)
    monkeypatch.setattr(segment.Segment, "unlink", unlink)
    return asked


def test_ctrl_c_inside_close_still_unlinks_every_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (KeyboardInterrupt) raised by the first unlink of close(): every segment is still
    unlinked and the KeyboardInterrupt propagates. Before, close() had already marked the
    machine closed and dropped it from the at-exit list, so the other segments stayed in
    /dev/shm for good."""
    m = Machine.create("host", cpus=1)

    def ctrl_c() -> None:
        raise KeyboardInterrupt
    asked = _interrupt_first_unlink(monkeypatch, ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            m.close()
        assert len(asked) == 1
        assert not entries_of(m.name)
        m.close()   # closed: a second close is a no-op
    finally:
        segment.unlink_parts(m.name)    # what a failure left


def test_signal_handler_inside_close_unlinks_every_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM/SIGHUP arriving inside close(): their handler runs close_all() and then kills the
    process, so close_all() alone must remove everything. Before, the machine being closed was
    skipped (already marked closed) and its segments leaked."""
    from rmm_mp import machine_exit
    m = Machine.create("host", cpus=1)
    left: list[set[str]] = []

    def handler() -> None:
        machine_exit.close_all()
        left.append(entries_of(m.name))     # what the process would leave if it died now
    _interrupt_first_unlink(monkeypatch, handler)
    try:
        m.close()
        assert left == [set()]
        assert not entries_of(m.name)
    finally:
        segment.unlink_parts(m.name)


def test_a_close_interrupted_twice_is_finished_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in close()'s unlink and again in its sweep of the machine's name: what is left is
    unlinked by the at-exit hook (close_all), which still knows the machine."""
    from rmm_mp import machine_exit
    m = Machine.create("host", cpus=1)

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    def sweep(prefix: str) -> None:
        raise KeyboardInterrupt
    unlink_parts = segment.unlink_parts
    _interrupt_first_unlink(monkeypatch, ctrl_c)
    monkeypatch.setattr(segment, "unlink_parts", sweep)
    try:
        with pytest.raises(KeyboardInterrupt):
            m.close()
        assert entries_of(m.name)
        monkeypatch.undo()
        machine_exit.close_all()
        assert not entries_of(m.name)
    finally:
        unlink_parts(m.name)


def test_exception_in_with_block_unlinks() -> None:
    """An exception unwinding a `with Machine.create()` block propagates unchanged and the
    machine's segments are gone."""
    name = ""
    with pytest.raises(KeyError, match="unwind"):
        with Machine.create("host", cpus=1) as m:
            name = m.name
            assert entries_of(name)
            raise KeyError("unwind")
    assert name and not entries_of(name)


def test_a_machine_being_created_cannot_be_attached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An attach racing Machine.create (`rmm-mp check` as a run starts) is refused until the
    machine is whole. Before, it attached a machine whose Secure granules were still in the NS
    PAS and the check reported 256 [gpt] violations, exit status 1, on a valid machine."""
    from click.testing import CliRunner

    from rmm_mp.cli import main
    seen: list[tuple[int, str]] = []
    real = Gpt.set_range

    def early(self: Gpt, *args: object) -> None:
        if not seen:
            name = next(n for n in os.listdir(segment.SHM_DIR) if n.startswith(f"rmm-mp-{os.getpid()}-"))
            result = CliRunner().invoke(main, ["check", name.split(".")[0]])
            seen.append((result.exit_code, result.output))
        real(self, *args)
    monkeypatch.setattr(Gpt, "set_range", early)
    with Machine.create("host", cpus=1) as m:
        assert m.platform.secure
        assert seen == [(2, f"Error: MachineError: machine '{m.name}' is still being created: try again in a moment\n")]
        with Machine.attach(m.name) as other:     # once made, it attaches
            assert other.control.ready
    # A control block whose creator died before it was made is not "being created". It is made
    # in a directory of this test's own: in the shared /dev/shm another pytest worker's
    # Machine.create sweeps it away as an orphan, and the attach would find no machine at all.
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    name = "rmm-mp-999999999-0badc0de"
    path = tmp_path / f"{name}.ctl"
    path.write_bytes(bytes(0x1000))
    with pytest.raises(MachineError, match="never finished: its creator .pid 999999999. died"):
        Machine.attach(name)
    assert path.exists()            # attach unlinks nothing


def test_a_machine_being_created_by_a_hidden_creator_is_not_said_to_be_dead(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    """An attach of a machine still being created whose creator /proc does not show (another
    user's, /proc mounted hidepid=invisible) but the kernel knows: it is still being created,
    as `rmm-mp clean` judges it (no orphan). The creator was said to have died while making it,
    and the message sent the user to `rmm-mp clean`, which removed nothing."""
    from rmm_mp.hw import process
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    name = f"rmm-mp-{os.getpid()}-0badc0de"
    (tmp_path / f"{name}.ctl").write_bytes(bytes(0x1000))

    def hidden(pid: int) -> tuple[bytes, int]:
        raise FileNotFoundError(2, "No such file or directory")
    monkeypatch.setattr(process, "_stat", hidden)
    with pytest.raises(MachineError, match="is still being created: try again in a moment"):
        Machine.attach(name)


@pytest.mark.parametrize("arguments, message", [
    ({"time_slice": 0}, "time_slice = 0: expected a number of guest instructions in 1..1,000,000,000"),
    ({"trace_capacity": (1 << 24) + 1}, "trace_capacity = 16777217: expected a number of records per CPU in "
                                        "0..16,777,216"),
], ids=["time-slice", "trace-capacity"])
def test_machine_create_words_its_integer_ranges_as_the_other_errors_do(arguments: dict[str, int],
                                                                        message: str) -> None:
    """Machine.create with a time slice or trace capacity out of range: the ValueError groups
    the range's digits, as an option's or an input file's error does (tomlnum.int_range). Found
    by review: it said 1..1000000000 and 0..16777216, where the rest said 1..1,000,000,000."""
    with pytest.raises(ValueError) as info:
        Machine.create("host", cpus=1, **arguments)  # type: ignore[arg-type]
    assert str(info.value) == message
