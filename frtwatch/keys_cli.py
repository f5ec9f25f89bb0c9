"""`frtwatch keys enrol|rotate|revoke|list`: the key registry (contracts/keyring.py).

Whoever may write the registry file administers the keys: these commands refuse a registry
that anyone but its owner could read or write, and write it atomically with mode 0600. A
new key's secret goes to a file of its own (--key-out, 0600), for the device; it is never
printed. The processor reads the registry again when it changes: no restart needed.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contracts.keyring import (
    HMAC_SHA256,
    SCHEMES,
    KeyEntry,
    Keyring,
    KeyringError,
    check_private,
    new_secret,
    write_device_key,
)
from core.settings import Settings

keys_app = typer.Typer(
    help="The key registry: which key signs which device's or back office's events.", no_args_is_help=True
)
console = Console()
errors = Console(stderr=True)

Registry = Annotated[
    Path | None, typer.Option(help="The registry file (default FRTWATCH_KEYS_FILE).", show_default=False)
]
Operator = Annotated[str, typer.Option(help="The operator the key is bound to.")]
Device = Annotated[
    str | None, typer.Option(help="The device the key is bound to; none: the operator's back office.")
]
KeyOut = Annotated[Path, typer.Option(help="Write the new key's secret here, for the device (0600).")]


def _registry(path: Path | None) -> Path:
    path = path or Settings.from_env().keys_file
    if path is None:
        errors.print("[red]no registry:[/] give --registry or set FRTWATCH_KEYS_FILE")
        raise typer.Exit(2)
    return path


def _open(path: Path) -> Keyring:
    if not path.exists():
        return Keyring()
    try:
        check_private(path)
        return Keyring.load(path)
    except (OSError, KeyringError) as error:
        errors.print(f"[red]cannot use the registry:[/] {error}")
        raise typer.Exit(2) from None


Change = Callable[[Keyring, bytes, datetime], KeyEntry]


def _new_key(path: Path, key_out: Path, change: Change) -> None:
    keyring = _open(path)
    if key_out.exists():
        errors.print(f"[red]{key_out} exists:[/] a key file is never overwritten")
        raise typer.Exit(2)
    secret = new_secret()
    try:
        entry = change(keyring, secret, datetime.now(UTC))
    except KeyringError as error:
        errors.print(f"[red]refused:[/] {error}")
        raise typer.Exit(1) from None
    write_device_key(key_out, entry, secret)
    try:
        keyring.save(path)
    except BaseException:
        key_out.unlink()  # not enrolled: its secret would only mislead
        raise
    console.print(f"{entry.key_id} {entry.source} {entry.scheme}; its secret is in {key_out}")


@keys_app.command("enrol")
def enrol(
    operator: Operator,
    key_out: KeyOut,
    device: Device = None,
    scheme: Annotated[str, typer.Option(help=f"One of {', '.join(SCHEMES)}.")] = HMAC_SHA256,
    registry: Registry = None,
) -> None:
    """Enrol a new key for a device (or an operator's back office) that has no active one."""
    _new_key(
        _registry(registry),
        key_out,
        lambda keyring, secret, at: keyring.enrol(operator, device, scheme, secret, at),
    )


@keys_app.command("rotate")
def rotate(
    operator: Operator,
    key_out: KeyOut,
    device: Device = None,
    overlap: Annotated[
        float, typer.Option(help="Hours of event time the old key still signs for (delayed uploads).")
    ] = 24.0,
    scheme: Annotated[str | None, typer.Option(help="The new key's scheme (default: the old key's).")] = None,
    registry: Registry = None,
) -> None:
    """A new key for the source; the old one is valid for events up to OVERLAP hours from now."""
    _new_key(
        _registry(registry),
        key_out,
        lambda keyring, secret, at: keyring.rotate(
            operator, device, secret, at, timedelta(hours=overlap), scheme
        ),
    )


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (`frtwatch keys list`).")],
    registry: Registry = None,
) -> None:
    """Refuse the key from now on, whatever the time of the events it signs."""
    path = _registry(registry)
    keyring = _open(path)
    try:
        entry = keyring.revoke(key_id, datetime.now(UTC))
    except KeyringError as error:
        errors.print(f"[red]refused:[/] {error}")
        raise typer.Exit(1) from None
    keyring.save(path)
    console.print(f"{entry.key_id} {entry.source} revoked at {entry.revoked_at}")


@keys_app.command("list")
def list_keys(registry: Registry = None) -> None:
    """Every key: its source, scheme, state and dates (never a secret)."""
    keyring = _open(_registry(registry))
    for e in keyring.entries:
        dates = f"enrolled {e.enrolled_at}"
        dates += f", valid until {e.valid_until}" if e.valid_until else ""
        dates += f", revoked {e.revoked_at}" if e.revoked_at else ""
        console.print(f"{e.key_id}  {e.source}  {e.scheme}  {e.state}  {dates}", soft_wrap=True)
