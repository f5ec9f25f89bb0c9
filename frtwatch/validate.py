"""`frtwatch events validate`: check a JSON Lines file against contract v1, line by line."""

from collections.abc import Iterator
from typing import BinaryIO

from contracts import MAX_MESSAGE_BYTES, ContractError, decode_event


def read_lines(stream: BinaryIO, limit: int = MAX_MESSAGE_BYTES) -> Iterator[tuple[int, bytes | int]]:
    """Yield (line number, line without its newline). A line longer than ``limit`` is yielded
    as its byte length instead and never held in memory whole."""
    number = 0
    while True:
        chunk = stream.readline(limit + 2)
        if not chunk:
            return
        number += 1
        if chunk.endswith(b"\n") or len(chunk) <= limit + 1:
            yield number, chunk.removesuffix(b"\n")
            continue
        size = len(chunk)
        while chunk and not chunk.endswith(b"\n"):
            chunk = stream.readline(1 << 20)
            size += len(chunk)
        yield number, size - (1 if chunk.endswith(b"\n") else 0)


def check_line(line: bytes | int) -> str | None:
    """None when the line is a valid event, else the error."""
    if isinstance(line, int):
        return f"message too large: {line} bytes, the limit is {MAX_MESSAGE_BYTES}"
    try:
        decode_event(line)
    except ContractError as error:
        return str(error)
    return None


def validate_stream(stream: BinaryIO) -> Iterator[tuple[int, str | None]]:
    """(line number, error or None) for every line of ``stream``."""
    for number, line in read_lines(stream):
        yield number, check_line(line)
