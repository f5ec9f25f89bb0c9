"""The judge's hot modules compiled with mypyc, run only when built from exactly these sources.

Admission, the codec and the rule engine are plain typed Python; mypyc compiles them as they
are into C extensions, and the judging runs 1.25 to 1.6 times as fast (BENCHMARKS.md). Built
extensions placed beside their sources would win the import even when older than an edit, so
`frtwatch compile` builds outside the repository, into a directory named by a hash of every
source of the packages involved (and of the Python ABI), and the finder ``install`` puts in
place loads from it only the build of the sources as they are now: after any edit the modules
run interpreted until the next build (``make test`` and ``make demo`` build first).
FRTWATCH_COMPILED=0 runs them interpreted whatever is built.

Only entry points install the finder, before they import anything it serves: the `frtwatch`
command (frtwatch/__main__.py), bench/ (its package init) and the test run (tests/conftest.py).
A library import (contracts, the device SDK) neither hashes the sources nor changes the path.
"""

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

# The modules compiled: the judging's own per-event work (stream_processors.judge and what it calls).
MODULES = (
    "contracts.codec",
    "contracts.timestamps",
    "stream_processors.admission",
    "stream_processors.judge",
    "stream_processors.rules.engine",
    "stream_processors.rules.evidence",
    "stream_processors.rules.facts",
    "stream_processors.rules.plan",
    "stream_processors.rules.predicates",
)
# Compiled code relies on the types of everything it imports, so every source of these packages
# is part of the hash, not only the modules compiled.
PACKAGES = ("contracts", "stream_processors")
ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "frtwatch" / "compiled"
EXTENSION = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
KEEP_BUILDS = 10  # about a megabyte each


def sources_hash(root: Path = ROOT) -> str:
    digest = hashlib.sha256(f"{EXTENSION}\0{','.join(MODULES)}\0".encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def build_dir(root: Path = ROOT) -> Path:
    return CACHE / sources_hash(root)


def enabled() -> bool:
    return os.environ.get("FRTWATCH_COMPILED", "1") != "0"


class _CompiledFinder(MetaPathFinder):
    """Finds the compiled modules, and mypyc's shared library they load, in one build."""

    def __init__(self, build: Path) -> None:
        self.build = build

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in MODULES and not fullname.endswith("__mypyc"):
            return None
        location = self.build / (fullname.replace(".", "/") + EXTENSION)
        if not location.is_file():
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(location))
        return importlib.util.spec_from_file_location(fullname, location, loader=loader)


def install() -> None:
    """Put the finder ahead of the source files, if a build of these sources exists (once). An
    entry point calls it before importing any of MODULES: one imported earlier stays interpreted."""
    if not enabled() or any(isinstance(finder, _CompiledFinder) for finder in sys.meta_path):
        return
    build = build_dir()
    if (build / "complete").is_file():
        sys.meta_path.insert(0, _CompiledFinder(build))


def active() -> bool:
    """Whether the compiled modules are the ones running."""
    return all(str(importlib.import_module(name).__file__).endswith(EXTENSION) for name in MODULES)


def build(root: Path = ROOT) -> Path:
    """Compile the modules of ``root``'s sources into their build directory (once). mypyc
    compiles in place, so it runs on a copy of the packages."""
    target = build_dir(root)
    if (target / "complete").is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="frtwatch-compile-") as scratch:
        work = Path(scratch)
        for package in PACKAGES:
            ignore = shutil.ignore_patterns("__pycache__", "*.so")
            shutil.copytree(root / package, work / package, ignore=ignore)
        if (root / "pyproject.toml").is_file():  # mypy's settings, in a checkout
            shutil.copy(root / "pyproject.toml", work)
        files = [name.replace(".", "/") + ".py" for name in MODULES]
        result = subprocess.run(
            [sys.executable, "-m", "mypyc", *files], cwd=work, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"mypyc failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
        built = next((work / "build").glob("lib.*"))
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=_mkdir(CACHE)))
        shutil.copytree(built, staging, dirs_exist_ok=True)
        (staging / "complete").write_text("\n".join(MODULES) + "\n")
        try:
            staging.rename(target)  # whole or not at all; a build racing this one may have won
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    _prune()
    return target


def _prune() -> None:
    """Keep the newest builds (other checkouts, other branches); drop older ones, and what a
    build that died left behind."""
    now = time.time()
    try:
        builds = sorted(((path.stat().st_mtime, path) for path in CACHE.iterdir()), reverse=True)
    except OSError:  # another build pruning at the same time: it will do
        return
    complete = [path for _, path in builds if (path / "complete").is_file()]
    for modified, path in builds:
        abandoned = path not in complete and now - modified > 3600
        if abandoned or path in complete[KEEP_BUILDS:]:
            shutil.rmtree(path, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
