"""No secret is printed or taken on a command line: the ClickHouse URL is shown without its
password (`stack status`, `audit sink`, `api serve` print it through clickhouse.describe), and
`frtwatch query` takes its token from the environment or a file, never an argument."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from frtwatch.stack.clickhouse import describe, redacted

PASSWORD = "s3cret-pw"
URL = f"http://frtwatch:{PASSWORD}@127.0.0.1:1/?compress=1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (URL, "http://frtwatch:***@127.0.0.1:1/?compress=1"),
        ("https://default:p@ss@ch:8443", "https://default:***@ch:8443"),
        ("https://ch:8443/?password=x&database=audit", "https://ch:8443/?password=***&database=audit"),
        ("http://reader@ch:8123", "http://reader@ch:8123"),  # no password to hide
        ("http://ch:8123", "http://ch:8123"),
    ],
)
def test_a_url_is_shown_without_its_secrets(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_describe_shows_a_server_without_its_password() -> None:
    assert describe(URL) == "server http://frtwatch:***@127.0.0.1:1/?compress=1"
    assert describe("chdb:///var/lib/frtwatch") == "embedded chDB at /var/lib/frtwatch"


def frtwatch(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FRTWATCH_")}
    environment |= {"FRTWATCH_HOME": str(home), **env}
    return subprocess.run(
        [sys.executable, "-m", "frtwatch", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", [("stack", "status"), ("audit", "sink"), ("api", "serve")])
def test_the_clickhouse_password_is_not_printed(tmp_path: Path, command: tuple[str, ...]) -> None:
    """`audit sink` and `api serve` say where the log is before they open it (here they cannot:
    nothing listens, and the API apart from the sink finds no statement key)."""
    run = frtwatch(tmp_path, *command, FRTWATCH_CLICKHOUSE_URL=URL)
    printed = run.stdout + run.stderr
    assert "frtwatch:***@127.0.0.1:1" in printed, printed[-3000:]
    assert PASSWORD not in printed


def test_query_takes_no_token_argument(tmp_path: Path) -> None:
    run = frtwatch(tmp_path, "query", "summary", "--token", "t0ken")
    assert run.returncode == 2 and "No such option" in run.stderr


def test_query_without_a_token_says_where_to_put_it(tmp_path: Path) -> None:
    run = frtwatch(tmp_path, "query", "summary")
    assert run.returncode == 2 and "FRTWATCH_API_TOKEN" in run.stderr and "--token-file" in run.stderr


@pytest.mark.parametrize("source", ["file", "environment"])
def test_query_reads_its_token_from_a_file_or_the_environment(tmp_path: Path, source: str) -> None:
    """Nothing listens at the API's address: getting as far as calling it shows the token was read."""
    env = {"FRTWATCH_API_URL": "http://127.0.0.1:1"}
    args: tuple[str, ...] = ()
    if source == "file":
        (tmp_path / "token").write_text("t0ken\n")
        args = ("--token-file", str(tmp_path / "token"))
    else:
        env["FRTWATCH_API_TOKEN"] = "t0ken"
    run = frtwatch(tmp_path, "query", "summary", *args, **env)
    assert run.returncode == 2 and "cannot reach the API" in run.stderr, run.stderr
    assert "t0ken" not in run.stdout + run.stderr
