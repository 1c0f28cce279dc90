"""The rmm-mp command line (click). It parses, calls into the package, and prints.

Every piece of logic a subcommand needs lives in an importable module (workload.run,
hw.platform, hw.orphans) so that tests reach it without a shell. `run` and the `workloads` group
are defined in workload/cli.py, the other subcommands in their packages (SUBCOMMANDS), and
imported only when they are run or listed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import click

from rmm_mp import __version__, interrupts, outpaths
from rmm_mp.abi.rmi import FeatureRegister0
from rmm_mp.clitypes import Group, usage_error
from rmm_mp.el3.attest import AttestationKeys
from rmm_mp.hw import orphans, platform as platforms, segment
from rmm_mp.hw.faults import MachineError
from rmm_mp.hw.tomlsrc import ConfigError, is_path, toml_string, what_it_is
from rmm_mp.printable import shown_path
from rmm_mp.words import count

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "attest": ("rmm_mp.attest.cli", "attest_group"),
    "run": ("rmm_mp.workload.cli", "run"),
    "workloads": ("rmm_mp.workload.cli", "workloads_group"),
    "stress": ("rmm_mp.stress.cli", "stress"),
    "check": ("rmm_mp.stress.check_cli", "check"),
    "explore": ("rmm_mp.stress.explore_cli", "explore"),
}
"""The subcommands defined in other modules: name -> (module, attribute), imported when the
command line names them (or lists them, for --help). Imported here at the top, they cost every
CPU process of a run about 0.1 s of CPU: a CPU process is a multiprocessing ``spawn`` child,
which runs its parent's main module again (as ``__mp_main__``), and for the rmm-mp console
script that is an import of this module; every subcommand's module came with it, the workload
engine, the explorer, the shrinker and the attestation verifier, none of which a CPU uses (64
of them on a 2-core host: 6 to 9 s of CPU, 3 to 4 s of the start-up)."""


class _Commands(Group):
    """The rmm-mp group, whose SUBCOMMANDS are imported as they are first asked for (and offered
    for a misspelt command: Group offers the closest of list_commands, which names them all,
    where click offered only those it had loaded, so `rmm-mp exlpore` got no suggestion)."""

    # Group's group_class = type would make a group declared with @main.group() one of these,
    # listing (and running) rmm-mp's own SUBCOMMANDS as its own: a subgroup is a plain Group.
    group_class = Group

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in SUBCOMMANDS:
            module, attr = SUBCOMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rmm-mp")
def main() -> None:
    """A multi-core runtime of the Arm CCA Realm Management Monitor (RMM 1.0-rel0).

    Every simulated CPU is an OS process; granules, the GPT and realm memory live in shared
    memory behind per-granule locks. Use it to stress-test lock correctness, run multi-realm
    workloads and measure per-CPU call latency.
    """


@main.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def clean(dry_run: bool) -> None:
    """Remove shared memory left by machines whose creator died (e.g. killed with SIGKILL).

    A creator's reaper process unlinks its segments when it dies, however it dies: what is
    left here is a creator's whose reaper was killed too, or was not told of them (a path
    with a newline in it, a reaper stopped until its pipe filled), or an older rmm-mp's.

    Only a machine's segments are looked at (rmm-mp-<creator pid>-<8 hex>.<part>, with a part
    a machine has, docs/architecture.md): any other file in the directory is left alone.

    An orphan that cannot be removed (another user's, or a directory with a segment's name) is
    named on stderr with the reason, and the exit status is 1; --dry-run names it so too ("would
    not be able to remove"), with the same status, as it says what the real clean would do. So is a segment directory
    (/dev/shm, or RMM_MP_SHM_DIR) that is missing, not a directory or not readable, as `rmm-mp
    run` says it."""
    try:
        segment.check_shm_dir(create=False)
    except MachineError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    # A dry run is said as the real clean would say it, status included: an orphan it could not
    # remove (a directory with a segment's name) read "would remove", exit status 0.
    found, failed = orphans.remove_orphans(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for machine in found:
        count = len(machine.paths)
        click.echo(f"{verb} {machine.prefix} (creator pid {machine.creator_pid}, "
                   f"{count} segment{'' if count == 1 else 's'})")
    for machine, why in failed:
        could = "would not be able to" if dry_run else "could not"
        click.echo(f"Error: {could} remove {machine.prefix} (creator pid {machine.creator_pid}): {why}", err=True)
    if not found and not failed:
        click.echo("no orphaned rmm-mp shared memory")
    if failed:
        raise SystemExit(1)


@main.group(name="platform", cls=Group)
def platform_group() -> None:
    """List and show platform descriptions."""


@platform_group.command(name="list")
def platform_list() -> None:
    """List the bundled platforms."""
    for name in platforms.bundled_platforms():
        plat = platforms.load(name)
        click.echo(f"{name:8} {plat.cpus:3} CPUs  {platforms.size_text(plat.dram.size):>12}  {plat.description}")


@platform_group.command(name="show")
@click.argument("name")
@click.option("--public-key", "public_key", is_flag=True,
              help="Print only the key that verifies this platform's CCA platform tokens (SPKI PEM), "
                   "for `rmm-mp attest verify --platform-key`.")
def platform_show(name: str, public_key: bool) -> None:
    """Validate and show platform NAME (a bundled name or a path).

    Exit status: 0 when NAME is a valid platform (shown); 2 when it is no bundled name and no
    file, or the file is no valid platform (the first error is printed)."""
    try:
        try:
            path = platforms.resolve(name)
        except ConfigError as exc:
            # NAME is an argument, as run's --platform is an option: say so, not "platform: platform = ..."
            # and what a bare name is in the working directory (a directory, mine.txt), as run's
            # --platform and a WORKLOAD are told.
            raise ConfigError("command line", "NAME", exc.value,
                              exc.expected + ("" if is_path(name) else what_it_is(name, "platform"))) from None
        plat = platforms.load(path)      # a resolved path resolves to itself
    except ConfigError as exc:
        raise usage_error(exc) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if public_key:
        click.echo(AttestationKeys(plat).platform_public_key_pem().decode(), nl=False)
        return
    from rmm_mp.workload.describe import held, wrapped     # here: the workload package is no start-up cost of rmm-mp

    # Every key of the model, so that what is shown is what a machine runs with.
    # No trailing ': ' after the name of a platform whose file gives no description.
    f = plat.features
    a = plat.attestation
    # Decoded from the register itself: a file's key the register drops (pmu_counters with
    # pmu = false) must not show up as if RMI_FEATURES reported it.
    features = ", ".join(held(item) for item in FeatureRegister0.describe(f.register0()).split(", "))
    seeds = (f" ({held('rak_seed ' + toml_string(a.rak_seed))}, "
             f"{held('platform_key_seed ' + toml_string(a.platform_key_seed))})" if a.keys == "seeds" else "")
    lines = [f"{plat.name}{': ' + plat.description if plat.description else ''}",
             f"source: {shown_path(plat.source)}",
             f"cpus {plat.cpus}, pa_bits {plat.pa_bits}, rec_time_slice {plat.rec_time_slice:,} guest instructions"]
    for kind, regions in (("dram", (plat.dram,)), ("mmio", plat.mmio), ("secure", plat.secure)):
        for region in regions:
            named = f" {region.name}" if region.name else ""
            lines.append(f"{kind}{named} [{region.base:#x}, {region.end:#x}) = {platforms.size_text(region.size)}, "
                         f"{count(region.size // platforms.GRANULE_SIZE, 'granule')}")
    lines.append(f"{held('RMI_FEATURES register 0 = ' + format(f.register0(), '#018x'))}: {features}")
    lines.append(f"vmid_bits {f.vmid_bits} (VMIDs 0..{(1 << f.vmid_bits) - 1:,})")
    lines.append(f"attestation keys: {a.keys}{seeds}")
    # Within the 118 columns of `workloads show` and the run report: the register's line ran to
    # some 210, the seeds' to 131 (a 60-column terminal folded them mid-word).
    click.echo("\n".join(piece for line in lines for piece in wrapped(line)))


def _import_subcommands(args: list[str]) -> None:
    """Import the module of the SUBCOMMANDS entry ``args`` name, or, when they name no command
    or the group's own -h/--help comes first (the listing shows each one's help, whatever
    command follows), every entry's; none for --version. The group's own options (-h, --help,
    --version) take no value, so its first argument that is not an option is the command's
    name. A name that is no subcommand is left to click."""
    for arg in args:
        if arg == "--version":
            return
        if arg in ("-h", "--help"):
            break
        if not arg.startswith("-"):
            if arg in SUBCOMMANDS:
                importlib.import_module(SUBCOMMANDS[arg][0])
            return
    for module, _ in SUBCOMMANDS.values():
        importlib.import_module(module)


def entry(ready: Callable[[], None] | None = None) -> None:
    """The rmm-mp program (the console script, and python -m rmm_mp, through rmm_mp.launch):
    the command line in a process that ends with its command, so that a Ctrl-C or SIGTERM after
    the command has given all its output, whichever command it was, leaves its exit status as
    it was (interrupts.ends_with_command, command_over), and a reader
    of its output or of its errors that has gone changes nothing but what is seen
    (outpaths.quiet_when_readers_leave). ``ready`` is called just before click's main begins,
    once the module of the subcommand named is imported (launch: Python's own Ctrl-C handler
    back, once nothing is left to do before the command)."""
    interrupts.ends_with_command()
    outpaths.quiet_when_readers_leave()
    if ready is not None:
        # The subcommand's own module is part of the start-up too (rmm_mp.stress.cli takes
        # about a quarter of a second): imported by click after the hand-over, a Ctrl-C in it
        # raised KeyboardInterrupt inside that import ("Aborted!"), as launch is there to stop.
        _import_subcommands(sys.argv[1:])
        ready()
    try:
        main(prog_name="rmm-mp")
    finally:
        # Whatever ended the command (a listing printed, --help, a usage error said, "Aborted!"),
        # its output is given: a Ctrl-C or SIGTERM from here on must not make the process die
        # of it (130, 143) or print a traceback, as after a verdict (interrupts.decided).
        interrupts.command_over()


if __name__ == "__main__":
    entry()
