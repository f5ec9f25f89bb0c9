"""Numbered schema migrations for the audit store, forwards and backwards.

audit/migrations/NNNN_name.up.sql and NNNN_name.down.sql; statements end with ";" at a line's
end, and {database} names the store's database. Applied versions are rows of
{database}.schema_migrations, the status table.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.up.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: migrations are named NNNN_name.up.sql")
        down = path.with_name(path.name.replace(".up.sql", ".down.sql"))
        if not down.exists():
            raise ValueError(f"{path.name} has no {down.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text(), down.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must run 1, 2, 3... without gaps: {versions}")
    return found


def _run(client: Any, database: str, sql: str) -> None:
    for statement in re.split(r";\s*$", sql, flags=re.MULTILINE):
        text = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
        if text.strip():
            client.command(text.replace("{database}", database))


def _ensure_status_table(client: Any, database: str) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY version"
    )


def applied(client: Any, database: str) -> dict[int, datetime]:
    _ensure_status_table(client, database)
    rows = client.query(f"SELECT version, applied_at FROM {database}.schema_migrations").result_rows
    return {int(version): at for version, at in rows}


def upgrade(client: Any, database: str, target: int | None = None) -> list[Migration]:
    """Apply every migration not yet applied, up to ``target`` (default: all)."""
    done = applied(client, database)
    ran = []
    for migration in migrations():
        if migration.version in done or (target is not None and migration.version > target):
            continue
        _run(client, database, migration.up)
        client.insert(
            f"{database}.schema_migrations",
            [(migration.version, migration.name, datetime.now(UTC))],
            column_names=["version", "name", "applied_at"],
        )
        ran.append(migration)
    return ran


def downgrade(client: Any, database: str, target: int = 0) -> list[Migration]:
    """Reverse applied migrations, newest first, down to ``target`` (0: all)."""
    done = applied(client, database)
    ran = []
    for migration in reversed(migrations()):
        if migration.version not in done or migration.version <= target:
            continue
        _run(client, database, migration.down)
        client.command(f"DELETE FROM {database}.schema_migrations WHERE version = {migration.version}")
        ran.append(migration)
    return ran
