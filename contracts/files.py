"""Writing a private file so that a reader, or a crash, sees the old text or the new one, whole."""

import os
import tempfile
from pathlib import Path


def replace_private(path: Path, text: str) -> None:
    """Atomically, mode 0600 (mkstemp's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
