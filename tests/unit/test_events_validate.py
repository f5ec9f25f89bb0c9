"""`frtwatch events validate`, run as a user runs it (the installed command, a real file)."""

import json
import subprocess
import sys
from pathlib import Path

from contracts import MAX_MESSAGE_BYTES
from contracts.artifacts import example_events

FRTWATCH = [sys.executable, "-m", "frtwatch"]


def run_validate(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*FRTWATCH, "events", "validate", *args], input=stdin, capture_output=True, timeout=60
    )


def test_every_example_is_ok_and_the_exit_code_is_zero(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(example_events().values()) + b"\n")
    result = run_validate(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [f"line {n}: ok" for n in range(1, 10)]
    assert b"9 line(s), 9 valid, 0 invalid" in result.stderr


def test_one_result_per_line_and_exit_one_when_any_line_is_invalid(tmp_path: Path) -> None:
    good = example_events()["media.deleted"]
    bad_uuid = json.dumps({**json.loads(good), "event_id": "nope"}).encode()
    huge = json.dumps({**json.loads(good), "padding": "x" * (2 * MAX_MESSAGE_BYTES)}).encode()
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([good, b"{oops", bad_uuid, b"\xff\xfe", huge, good]) + b"\n")
    result = run_validate(str(path))
    assert result.returncode == 1
    assert result.stdout.decode().splitlines() == [
        "line 1: ok",
        "line 2: error: not valid JSON: JSON is malformed: object keys must be strings (byte 1)",
        "line 3: error: event_id: not a UUID",
        "line 4: error: invalid UTF-8 at byte 0",
        f"line 5: error: message too large: {len(huge)} bytes, the limit is 65536",
        "line 6: ok",
    ]


def test_stdin_with_a_dash() -> None:
    result = run_validate("-", stdin=example_events()["consent.granted"] + b"\n")
    assert result.returncode == 0
    assert result.stdout == b"line 1: ok\n"


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run_validate(str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2
    assert b"cannot read" in result.stderr
