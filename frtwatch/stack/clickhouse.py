"""ClickHouse: embedded chDB by default (a data folder owned by one process at a time), or a
server over HTTP by configuration. Same client (clickhouse-connect), same SQL."""

from pathlib import Path

import clickhouse_connect


def describe(dsn: str) -> str:
    """Where the audit log lives, for people: the chDB folder or the server URL."""
    return f"embedded chDB at {dsn.removeprefix('chdb://')}" if dsn.startswith("chdb://") else f"server {dsn}"


def check(dsn: str) -> str:
    """Open the store, return the engine version. Creates the chDB folder when needed."""
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        return str(client.command("SELECT version()"))
    finally:
        client.close()
