"""ClickHouse: embedded chDB by default (a data folder owned by one process at a time), or a
server over HTTP by configuration. Same client (clickhouse-connect), same SQL."""

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import clickhouse_connect

SECRET_PARAMETERS = ("password", "access_token", "access_key", "secret", "token")


def describe(dsn: str) -> str:
    """Where the audit log lives, for people: the chDB folder or the server URL, its secrets
    left out."""
    return (
        f"embedded chDB at {dsn.removeprefix('chdb://')}"
        if dsn.startswith("chdb://")
        else f"server {redacted(dsn)}"
    )


def redacted(url: str) -> str:
    """``url`` with the password of its user and any secret parameter shown as ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = [
        (key, "***" if any(word in key.lower() for word in SECRET_PARAMETERS) else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def check(dsn: str) -> str:
    """Open the store, return the engine version. Creates the chDB folder when needed."""
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        return str(client.command("SELECT version()"))
    finally:
        client.close()
