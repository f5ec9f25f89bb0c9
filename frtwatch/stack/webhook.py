"""A local Alertmanager webhook receiver: keeps every notification with the time it arrived,
so the demo can show pages and tests and benchmarks can check and time them."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Notification:
    receiver: str  # the path it was posted to: Alertmanager's receiver name
    received: float  # time.time() on arrival
    payload: dict[str, Any]  # Alertmanager's webhook JSON (version 4)

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.payload.get("alerts", []))


class _Server(ThreadingHTTPServer):
    # Alertmanager opens a connection per notification, one per violation paged: a burst
    # overflows the default listen queue of 5, and the refused pages come a minute later.
    request_queue_size = 1024


@dataclass
class WebhookReceiver:
    port: int = 0  # 0: any free port
    notifications: list[Notification] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived = time.time()
                with receiver._lock:
                    receiver.notifications.append(
                        Notification(self.path.strip("/"), arrived, json.loads(body))
                    )
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the notifications are the record

        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def received(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
