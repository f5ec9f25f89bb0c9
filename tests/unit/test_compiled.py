"""The judge compiled with mypyc (frtwatch/compiled.py): in use when built from these sources,
never when the sources have changed since, and judging exactly as the interpreted code does."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from frtwatch import compiled

# What an entry point does (frtwatch/__main__.py): the finder first, then the imports.
LOADED_FROM = (
    "import importlib, sys; from frtwatch import compiled; compiled.install();"
    " print(importlib.import_module(sys.argv[1]).__file__)"
)
# What the device SDK, the API, the sink or a worker imports; then what got loaded and installed.
LIBRARY_IMPORT = (
    "import json, sys, audit.api, audit.sink, contracts, core.settings, producers.simulator,"
    " stream_processors.judge; print(json.dumps([sorted(name for name in sys.modules"
    " if name.startswith('frtwatch')), [type(finder).__name__ for finder in sys.meta_path]]))"
)
ENTRY_POINT = (
    "import sys; from frtwatch.__main__ import main; sys.argv = ['frtwatch', '--help']\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "from frtwatch import compiled; print(compiled.active())"
)


def _python(code: str) -> str:
    """The last line ``code`` prints in a fresh interpreter, the compiled judge allowed."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=compiled.ROOT,
        env={**os.environ, "FRTWATCH_COMPILED": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def test_the_judge_runs_compiled_unless_turned_off() -> None:
    if compiled.enabled():
        assert compiled.active(), "no build of these sources: run `frtwatch compile` (make test does)"
    else:
        assert not compiled.active()


def test_only_entry_points_install_the_finder() -> None:
    """A library import loads nothing of the CLI package (frtwatch/) and leaves the import path
    alone; the `frtwatch` command installs the finder before its commands import the judge."""
    frtwatch_modules, finders = json.loads(_python(LIBRARY_IMPORT))
    assert frtwatch_modules == []
    assert "_CompiledFinder" not in finders
    assert _python(ENTRY_POINT) == "True", "no build of these sources: run `frtwatch compile`"


def _copy_of_the_sources(root: Path) -> Path:
    for package in compiled.PACKAGES:
        shutil.copytree(compiled.ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "frtwatch").mkdir()
    for name in ("__init__.py", "compiled.py"):
        shutil.copy(compiled.ROOT / "frtwatch" / name, root / "frtwatch")
    return root


def _loaded_from(root: Path, module: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", LOADED_FROM, module],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_build_serves_only_the_sources_it_was_built_from(tmp_path: Path) -> None:
    root = _copy_of_the_sources(tmp_path)
    module = "stream_processors.rules.engine"
    assert compiled.sources_hash(root) == compiled.sources_hash()
    if compiled.enabled():  # the same sources elsewhere: the same build
        assert _loaded_from(root, module) == str(
            compiled.build_dir() / f"stream_processors/rules/engine{compiled.EXTENSION}"
        )

    # Any edit to the packages, even one to a module not compiled, and the sources run instead.
    events = root / "contracts" / "events.py"
    events.write_text(events.read_text() + "\n# an edit\n")
    assert compiled.sources_hash(root) != compiled.sources_hash()
    assert _loaded_from(root, module) == str(root / "stream_processors" / "rules" / "engine.py")


def _eval(events: Path, keys: Path, compiled_setting: str) -> tuple[list[dict[str, object]], list[str]]:
    result = subprocess.run(
        [sys.executable, "-m", "frtwatch", "rules", "eval", "--keys", str(keys), str(events)],
        env={**os.environ, "FRTWATCH_COMPILED": compiled_setting},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    violations = [json.loads(line) for line in result.stdout.splitlines()]
    for violation in violations:
        violation.pop("detected_at")  # wall-clock time
    # "line N: reason: detail", without the detail: a refused timestamp's is measured from now
    lines = result.stderr.splitlines()
    refused = [":".join(line.split(":")[:2]) for line in lines if line.startswith("line ")]
    return violations, refused


def test_compiled_and_interpreted_judge_alike(tmp_path: Path) -> None:
    """Every violation and every refusal the same, hostile messages included."""
    events, keys = tmp_path / "events.jsonl", tmp_path / "keys.json"
    simulate = [sys.executable, "-m", "frtwatch", "simulate", "--events", "6000", "--seed", "23"]
    simulate += ["--bad-share", "0.05", "--output", str(events), "--keys-file", str(keys)]
    assert subprocess.run(simulate, capture_output=True, timeout=300).returncode == 0

    as_compiled, refused_compiled = _eval(events, keys, "1")
    as_interpreted, refused_interpreted = _eval(events, keys, "0")
    assert len(as_interpreted) > 500
    reasons = {line.split(": ")[1] for line in refused_interpreted}
    assert reasons >= {"bad_signature", "invalid_event", "seq_gap"}
    assert as_compiled == as_interpreted
    assert refused_compiled == refused_interpreted


def test_old_builds_and_abandoned_ones_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "CACHE", tmp_path)
    hour_ago = time.time() - 3700
    for n in range(12):
        build = tmp_path / f"build-{n:02}"
        build.mkdir()
        (build / "complete").write_text("")
        os.utime(build, (hour_ago + n, hour_ago + n))
    (tmp_path / "died").mkdir()
    os.utime(tmp_path / "died", (hour_ago, hour_ago))
    (tmp_path / "building").mkdir()  # another build, still running

    compiled._prune()

    kept = {path.name for path in tmp_path.iterdir()}
    assert kept == {"building", *(f"build-{n:02}" for n in range(2, 12))}
