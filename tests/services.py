"""Real services for tests, started on free loopback ports in a temporary home."""

import socket
from pathlib import Path

from frtwatch.stack.kafka import KafkaCluster


def free_ports(count: int) -> list[int]:
    """Ports that are free right now (bound together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def kafka_cluster(home: Path, brokers: int = 1) -> KafkaCluster:
    ports = free_ports(2 * brokers)
    return KafkaCluster(
        home=home, broker_ports=tuple(ports[:brokers]), controller_ports=tuple(ports[brokers:])
    )
