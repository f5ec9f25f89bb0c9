"""/metrics over HTTP for any frtwatch process (prometheus-client's server)."""

import logging

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger("frtwatch.metrics")


def serve(registry: CollectorRegistry, port: int, what: str, host: str = "127.0.0.1") -> None:
    """/metrics on ``host``:``port`` (0: not served). A taken port is logged, not fatal:
    the work matters more than its metrics."""
    if not port:
        return
    try:
        start_http_server(port, addr=host, registry=registry)
        log.info("%s metrics on http://%s:%d/metrics", what, host, port)
    except OSError as error:
        log.error("%s metrics not served: port %d: %s", what, port, error)
