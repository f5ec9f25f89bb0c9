"""`frtwatch query ...`: the regulators' API from the terminal. Entries go to stdout as JSON
Lines, progress and errors to stderr. It is a client of the API, so every query is recorded in
the audit log exactly as the API's own are, and a token's scope applies."""

import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from core.settings import Settings

query_app = typer.Typer(
    help="Ask the regulators' API (FRTWATCH_API_URL; the token in FRTWATCH_API_TOKEN or --token-file).",
    no_args_is_help=True,
)
console = Console(stderr=True)
STATUSES = ("open", "retracted")

ApiUrl = Annotated[
    str | None, typer.Option(envvar="FRTWATCH_API_URL", help="Default http://127.0.0.1:FRTWATCH_API_PORT.")
]
TokenFile = Annotated[
    Path | None,
    typer.Option(help="A file holding your API token. Default: FRTWATCH_API_TOKEN (never an argument)."),
]
Operator = Annotated[str | None, typer.Option(help="operator_id.")]
Since = Annotated[datetime | None, typer.Option(help="occurred_at at or after (UTC).")]
Until = Annotated[datetime | None, typer.Option(help="occurred_at before (UTC).")]
Limit = Annotated[int, typer.Option(help="Entries per page (at most 1000).")]
All = Annotated[bool, typer.Option("--all", help="Follow the cursor to the last page.")]


def _token(token_file: Path | None) -> str:
    """The caller's token, from a file or the environment: a command line is seen by every user
    of the machine (ps) and kept in shell histories."""
    try:
        token = token_file.read_text().strip() if token_file else os.environ.get("FRTWATCH_API_TOKEN", "")
    except OSError as error:
        console.print(f"[red]cannot read the token file: {error}[/red]")
        raise typer.Exit(2) from None
    if not token:
        console.print("[red]no API token: set FRTWATCH_API_TOKEN, or give --token-file[/red]")
        raise typer.Exit(2)
    return token


class Api:
    def __init__(self, url: str | None, token_file: Path | None) -> None:
        token = _token(token_file)
        base = url or f"http://127.0.0.1:{Settings.from_env().api_port}"
        self.client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(30, read=900)
        )

    def get(self, path: str, params: dict[str, Any]) -> Any:
        response = self._request(path, params)
        try:
            return response.json()
        finally:
            response.close()

    def _request(self, path: str, params: dict[str, Any], stream: bool = False) -> httpx.Response:
        """The response (read unless ``stream``), or a clear message and exit on any refusal."""
        try:
            response = self.client.send(
                self.client.build_request("GET", path, params=_params(params)), stream=True
            )
        except httpx.TransportError as error:
            console.print(f"[red]cannot reach the API at {self.client.base_url}: {error}[/red]")
            console.print("is `frtwatch api serve` running? (FRTWATCH_API_URL names another)")
            raise typer.Exit(2) from None
        if response.status_code >= 400:
            response.read()
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            console.print(f"[red]refused ({response.status_code}): {detail}[/red]")
            raise typer.Exit(1)
        if not stream:
            response.read()
        return response

    def pages(self, path: str, params: dict[str, Any], follow: bool) -> Iterator[dict[str, Any]]:
        """Every item of every page (or of the first), with progress on stderr."""
        cursor, count, page = None, 0, 0
        with console.status("querying...") as status:
            while True:
                found = self.get(path, {**params, "cursor": cursor})
                page += 1
                count += len(found["items"])
                status.update(f"{count} entries, {page} pages")
                yield found
                cursor = found["next_cursor"]
                if not follow or cursor is None:
                    break
        if cursor is not None:
            console.print("more entries follow: --all reads every page")

    def download(self, path: str, params: dict[str, Any], out: Path) -> None:
        with console.status("the API is selecting entries and building their proofs..."):
            response = self._request(path, params, stream=True)
        total = int(response.headers.get("content-length", 0)) or None
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        try:
            with Progress(*columns, console=console) as bar, out.open("wb") as file:
                task = bar.add_task(f"downloading {out.name}", total=total)
                for chunk in response.iter_bytes():
                    file.write(chunk)
                    bar.update(task, advance=len(chunk))
        finally:
            response.close()


def _params(params: dict[str, Any]) -> dict[str, str]:
    return {
        k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in params.items() if v is not None
    }


def _print_items(pages: Iterator[dict[str, Any]]) -> None:
    for found in pages:
        for item in found["items"]:
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")


@query_app.command("violations")
def violations(
    token_file: TokenFile = None,
    api_url: ApiUrl = None,
    operator: Operator = None,
    site: Annotated[str | None, typer.Option(help="site_id.")] = None,
    device: Annotated[str | None, typer.Option(help="device_id.")] = None,
    rule: Annotated[str | None, typer.Option(help="rule_id.")] = None,
    severity: Annotated[str | None, typer.Option(help="critical, high, medium, low or info.")] = None,
    pack: Annotated[str | None, typer.Option(help="policy pack.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only violations now open, or now retracted by a late fact.")
    ] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    all_pages: All = False,
) -> None:
    """Violations, oldest first, each once as it stands now: its current record with its
    "status" (open or retracted) and how many "records" it has (`query violation ID`: them all)."""
    if status not in (None, *STATUSES):
        console.print(f"[red]--status must be one of {', '.join(STATUSES)}[/red]")
        raise typer.Exit(2)
    params = {
        "operator_id": operator, "site_id": site, "device_id": device, "rule_id": rule,
        "severity": severity, "policy_pack": pack, "status": status, "since": since, "until": until,
        "limit": limit,
    }  # fmt: skip
    _print_items(Api(api_url, token_file).pages("/v1/violations", params, all_pages))


@query_app.command("violation")
def violation(
    violation_id: Annotated[str, typer.Argument(help="The violation's violation_id.")],
    token_file: TokenFile = None,
    api_url: ApiUrl = None,
) -> None:
    """A violation's history: every record of it in log order (the original, any retraction or
    late detection), the last one its current state."""
    found = Api(api_url, token_file).get(f"/v1/violations/{quote(violation_id, safe='')}/history", {})
    if not found["items"]:
        console.print(f"[red]no record of violation {violation_id} among the operators you may read[/red]")
        raise typer.Exit(1)
    for item in found["items"]:
        sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    console.print(f"{len(found['items'])} records; violation {violation_id} is {found['status']}")


@query_app.command("subject")
def subject(
    subject_ref: Annotated[str, typer.Argument(help="The subject's pseudonymous reference.")],
    token_file: TokenFile = None,
    api_url: ApiUrl = None,
    operator: Operator = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    all_pages: All = False,
) -> None:
    """A subject's history: recognitions with legal basis and consent, consents, violations."""
    params = {"operator_id": operator, "since": since, "until": until, "limit": limit}
    _print_items(
        Api(api_url, token_file).pages(
            f"/v1/subjects/{quote(subject_ref, safe='')}/history", params, all_pages
        )
    )


@query_app.command("device")
def device(
    device_id: Annotated[str, typer.Argument(help="The device.")],
    token_file: TokenFile = None,
    api_url: ApiUrl = None,
    event_type: Annotated[str | None, typer.Option(help="Only this event type.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    all_pages: All = False,
    configurations: Annotated[
        bool, typer.Option("--configurations", help="Print its configurations over time instead.")
    ] = False,
) -> None:
    """A device's events and violations (or its declared configurations over time)."""
    params = {"event_type": event_type, "since": since, "until": until, "limit": limit}
    pages = Api(api_url, token_file).pages(
        f"/v1/devices/{quote(device_id, safe='')}/history", params, all_pages
    )
    if not configurations:
        _print_items(pages)
        return
    for configured in next(pages)["configurations"]:
        sys.stdout.write(json.dumps(configured, ensure_ascii=False) + "\n")


@query_app.command("summary")
def summary(
    token_file: TokenFile = None,
    api_url: ApiUrl = None,
    operator: Operator = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """Counts of violations, events and dead letters (every role may ask)."""
    found = Api(api_url, token_file).get(
        "/v1/summary", {"operator_id": operator, "since": since, "until": until}
    )
    print(json.dumps(found, indent=2, ensure_ascii=False))


@query_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    token_file: TokenFile = None,
    api_url: ApiUrl = None,
    format: Annotated[
        str, typer.Option(help="json (the bundle), or jsonl, csv, parquet (a zip of bundle and table).")
    ] = "jsonl",
    kind: Annotated[str | None, typer.Option(help="event, violation, dead_letter or query.")] = None,
    operator: Operator = None,
    site: Annotated[str | None, typer.Option(help="site_id.")] = None,
    device: Annotated[str | None, typer.Option(help="device_id.")] = None,
    subject: Annotated[str | None, typer.Option(help="subject_ref.")] = None,
    rule: Annotated[str | None, typer.Option(help="rule_id.")] = None,
    severity: Annotated[str | None, typer.Option(help="critical, high, medium, low or info.")] = None,
    pack: Annotated[str | None, typer.Option(help="policy pack.")] = None,
    violation_id: Annotated[
        str | None, typer.Option("--violation", help="Every record of this violation_id.")
    ] = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """Download an export with inclusion proofs and the signed checkpoint; check it with
    `frtwatch verify FILE --public-key KEY`. Every record of a violation is an entry (its
    history); a table names each one's current_status."""
    params = {
        "format": format, "kind": kind, "operator_id": operator, "site_id": site, "device_id": device,
        "subject_ref": subject, "rule_id": rule, "severity": severity, "policy_pack": pack,
        "violation_id": violation_id, "since": since, "until": until,
    }  # fmt: skip
    Api(api_url, token_file).download("/v1/export", params, out)
    console.print(f"written to {out}; check it with: frtwatch verify {out} --public-key KEY")


@query_app.command("checkpoint")
def checkpoint(token_file: TokenFile = None, api_url: ApiUrl = None) -> None:
    """The latest signed tree head and the log's public key."""
    print(json.dumps(Api(api_url, token_file).get("/v1/checkpoint", {}), indent=2))
