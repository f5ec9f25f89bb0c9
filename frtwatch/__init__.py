"""frtwatch: event-streaming audit log and real-time monitor for facial-recognition deployments."""

from pathlib import Path

__version__ = "0.1.0"

# The repository root: deploy/ configs and policy packs are read from here.
REPO_ROOT = Path(__file__).resolve().parent.parent
