"""Which platform a workload runs on, and the refusal when there is none.

    platform_of(file, option) -> Platform

``--platform`` (a word of the command line: a path is the working directory's), else the file's
``platform`` key (a path is read beside the workload file, not in the working directory), else
host. A name that is neither a bundled platform nor a path is told what it names where its path
would be read (a directory, a file whose name does not end in .toml: tomlsrc.what_it_is), as a
workload name on the command line is. Split from resolve.py, which calls it first.
"""

from __future__ import annotations

from pathlib import Path

from rmm_mp.hw import platform as platforms
from rmm_mp.hw.platform import Platform
from rmm_mp.hw.tomlsrc import ConfigError, is_path, what_it_is, why_not_a_file, with_bundled_hint
from rmm_mp.printable import shown_path
from rmm_mp.workload.spec import WorkloadFile, base_directory, beside


def platform_of(file: WorkloadFile, option: str | None) -> Platform:
    """The platform of ``file`` run with ``--platform option`` (None: not given); ConfigError
    naming the option, or the file's key and line, if there is none such."""
    value = option if option is not None else file.platform if file.platform is not None else "host"
    if option is None and file.platform is not None and is_path(value):
        # Read next to the workload file, not in the working directory: say where it was
        # looked for, as a guest file's error does (a mine.toml in the working directory made
        # a bare "no such file" read as wrong).
        path = base_directory(file.source) / value
        # The hint is judged on the value as written (fvp.toml gets one, sub/fvp.toml not).
        why = with_bundled_hint(why_not_a_file(path), value, platforms.platform_dir(), "platform")
        if why is not None:
            # The path escaped where a character would act on the terminal (a NUL, an ESC:
            # "a\u001b[2J.toml" cleared the screen), as the value itself is.
            where = "" if "\0" in value else f"looked for {shown_path(path)}{beside(file.source)}: "
            raise file.fields.fail("platform", file.platform, f"a regular platform file that exists ({where}{why})")
        value = str(path)
    try:
        return platforms.load(value)
    except ConfigError as exc:
        if exc.source != "platform":     # a problem inside the platform file: its own message
            raise
        # A bare name that is no bundled platform (a path's refusal says what the path is):
        # `--platform mydir` or `platform = "mine"` beside a directory or a mine.txt said only
        # "expected a bundled platform ... or a path to a .toml file".
        if option is not None:
            raise ConfigError("command line", "--platform", option,
                              exc.expected + ("" if is_path(option) else what_it_is(option, "platform"))) from None
        base: Path | None = base_directory(file.source)
        raise file.fields.fail("platform", file.platform,
                               exc.expected + ("" if is_path(value) else what_it_is(value, "platform", base))) from None
