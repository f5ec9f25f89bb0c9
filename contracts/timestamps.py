"""RFC 3339 UTC timestamps as the contract writes them: ``2026-11-21T08:00:00.123Z``.

Timestamps stay strings in the models so a decoded event re-encodes byte for byte (signatures
cover the text); these helpers convert at the edges.
"""

from datetime import UTC, datetime

# Z (UTC) is required; the fraction is optional on input, and always milliseconds on output.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"


def parse_timestamp(text: str) -> datetime:
    """Parse a contract timestamp into an aware UTC datetime; ValueError if it is not a real time."""
    return datetime.fromisoformat(text)


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as the contract's UTC timestamp with milliseconds."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    # isoformat, not strftime: this runs for every violation and alert, and is twice as fast.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def format_utc_timestamp(moment: datetime) -> str:
    """Like format_timestamp, reading a naive datetime as UTC (as ClickHouse returns them)."""
    return format_timestamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def now_timestamp() -> str:
    return format_timestamp(datetime.now(UTC))
