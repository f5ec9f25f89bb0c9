"""Policy packs reload without a restart: when a pack file changes (or on SIGHUP), the packs
are loaded and checked first, and swapped in only if all of them are valid; otherwise the
running packs stay and the error is reported."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream_processors.rules.pack import PACKS_DIR, Pack, PackError, load_packs


@dataclass
class PackWatcher:
    names: list[str]
    extensions: Path | None = None
    directory: Path = PACKS_DIR
    _stamps: dict[Path, float] = field(default_factory=dict)
    last_error: str | None = None

    def __post_init__(self) -> None:
        self._stamps = self._read_stamps()

    def _read_stamps(self) -> dict[Path, float]:
        paths = [*self.directory.glob("*.yaml"), *([self.extensions] if self.extensions else [])]
        return {path: path.stat().st_mtime for path in paths if path.exists()}

    def changed(self) -> bool:
        return self._read_stamps() != self._stamps

    def reload(self, on_error: Callable[[str], None]) -> list[Pack] | None:
        """The new packs if they all load, else None (and ``on_error`` is told why)."""
        self._stamps = self._read_stamps()
        try:
            packs = load_packs(self.names, self.extensions)
        except PackError as error:
            self.last_error = str(error)
            on_error(self.last_error)
            return None
        self.last_error = None
        return packs
