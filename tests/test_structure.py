"""The package's shape: public surfaces, import layering, packaging and CI wiring."""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path

import rmm_mp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rmm_mp"

# DESIGN.md section 2: imports run one way. A module may import packages of its own level or
# below. check/ may read RMM structures; machine.py, cpu_handle.py and runtime.py wire the layers together;
# attest/ (token encoding and the verifier) stands on abi (with words.py, and inputfile.py for
# its command line), so EL3, the RMM and the CLI can all use it. inputfile.py (the bounded read of a file a user names) imports nothing of
# rmm_mp, so that hw's TOML reader and attest's command line can both use it.
LEVELS = {
    "abi": 0, "inputfile": 0, "printable": 0, "timeunits": 0, "hw": 1, "stats": 2, "attest": 2, "outpaths": 2, "clitypes": 2, "words": 2, "interrupts": 2, "el3": 3, "guest": 4, "rmm": 5, "check": 6,
    "machine": 7, "machine_exit": 7, "cpu_handle": 7, "runtime": 7, "cpu_supervisor": 7, "cpu_main": 7, "cpu_args": 7, "cpu_outcome": 7, "cpu_start": 7, "cpu_exit": 7, "interrupt_hold": 7, "host": 8, "workload": 9, "stress": 9, "cli": 10, "launch": 10, "__main__": 10, "__init__": 10,
}
# The host speaks SMC only: it must not reach into the RMM or EL3.
FORBIDDEN = {"host": {"rmm", "el3"}}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _typing_only(tree: ast.Module) -> set[int]:
    """Line numbers inside `if TYPE_CHECKING:` blocks (annotations only, no runtime import)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _typing_only(tree)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rmm_mp"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.startswith("rmm_mp"))
    return found


def test_imports_follow_the_layering() -> None:
    """No module imports a package above its own layer (abi <- hw <- stats <- el3 <- guest <-
    rmm <- check <- machine/runtime <- host <- workload <- cli), and host imports neither rmm nor
    el3. Lazy imports inside functions count too; imports for type annotations only do not."""
    broken = []
    for path in PACKAGE.rglob("*.py"):
        layer = _layer(path)
        for line, module in _imports(path):
            parts = module.split(".")
            if len(parts) == 1:
                continue
            target = parts[1]
            if target not in LEVELS:
                broken.append(f"{path.relative_to(ROOT)}:{line} imports unknown layer {module}")
            elif LEVELS[target] > LEVELS[layer] or target in FORBIDDEN.get(layer, set()):
                broken.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {module} ({target})")
    assert not broken, "\n".join(broken)


def test_every_layer_is_known() -> None:
    """Every top-level module or package of rmm_mp has a place in the layering."""
    names = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())}
    assert names <= set(LEVELS), names - set(LEVELS)


def test_public_surfaces_match_all() -> None:
    """Each package __init__ that declares __all__ exports exactly those names, and the top
    level offers the DESIGN.md section 3 API."""
    assert {"Machine", "GranuleProtectionFault", "RmmInternalError"} <= set(rmm_mp.__all__)
    for init in PACKAGE.rglob("__init__.py"):
        name = ".".join(init.relative_to(ROOT).parent.parts)
        module = importlib.import_module(name)
        declared = getattr(module, "__all__", None)
        if declared is None:
            continue
        for export in declared:
            assert hasattr(module, export), f"{name}.__all__ names {export}, which is missing"
        tree = ast.parse(init.read_text())
        bound = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert bound <= set(declared), f"{name} imports {sorted(bound - set(declared))} without exporting them"


def test_pyproject_lists_every_package() -> None:
    """pyproject.toml lists every rmm_mp package (a new subpackage must not be left out of the
    wheel), and maps platform/ and workloads/ into the installed package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert on_disk <= listed, on_disk - listed
    assert config["package-dir"]["rmm_mp.platforms"] == "platform"
    assert config["package-dir"]["rmm_mp.workloads"] == "workloads"


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs exactly the test command of README.md's quick start."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```(?:sh|bash)?\n(.*?)```", readme, re.S)
    assert block, "README.md has no quick-start code block"
    commands = [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert "rmm-mp run" in commands[0]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in commands[1] and "-n auto" in commands[1]


def test_no_platform_package_shadows_the_standard_library() -> None:
    """platform/ is data: an __init__.py there would shadow the standard `platform` module."""
    assert not (ROOT / "platform" / "__init__.py").exists()


LINE_LIMIT = 120
"""The source's line width (the package and tools/ are held to it below)."""


def test_the_package_and_tools_keep_to_the_line_width() -> None:
    """Every line of every module of the package and of tools/ is at most 120 characters: first
    only the report, CLI and input-file modules were held to it, and some 60 lines elsewhere ran
    to 121-193 (a click option's help, a docstring line, a comment beside a constant). tests/
    is not held to it (a test's expected message is often one long string)."""
    files = sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tools").rglob("*.py")])
    assert len(files) > 100, files      # the whole package, not a pattern that matches nothing
    long = [f"{path.relative_to(ROOT)}:{number}: {len(line)}"
            for path in files
            for number, line in enumerate(path.read_text().splitlines(), start=1) if len(line) > LINE_LIMIT]
    assert long == [], long
