"""Every query the regulators' API answers or refuses goes into the audit log: who asked, what,
when, the outcome and how many rows. The API publishes the record to Kafka and waits for the
broker's acknowledgement before it answers (no record, no answer); the audit sink, the log's
one writer, appends it like any other entry, exactly once by request_id.
"""

import logging
import uuid
from typing import Any

from kafka import KafkaProducer

from contracts import canonical_json, topics
from contracts.timestamps import now_timestamp
from core.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger("frtwatch.api")


class QueryLogUnavailable(RuntimeError):
    """The record could not be published: the query must not be answered."""


def new_request_id() -> str:
    return uuid.uuid4().hex


def query_record(
    request_id: str,
    principal: dict[str, Any],
    method: str,
    route: str,
    params: dict[str, Any],
    status: int,
    rows: int,
) -> dict[str, Any]:
    """A call and its outcome. It carries no operator_id: who may read it is decided by who
    asked (audit/selection.py), never by an operator a call names."""
    return {
        "kind": "query",
        "request_id": request_id,
        "at": now_timestamp(),
        "principal": principal,
        "method": method,
        "route": route,
        "params": params,
        "status": status,
        "rows": rows,
    }


def rate_limited_record(since: str, refused: dict[str, int]) -> dict[str, Any]:
    """The calls refused over their rate limit (429) since ``since``, counted by who made them
    (a principal, or an address), in one record: none of them was answered."""
    record = query_record(new_request_id(), {"name": None, "role": "rate-limited"}, "", "", {}, 429, 0)
    return record | {"since": since, "refused": refused, "calls": sum(refused.values())}


class QueryLog:
    def __init__(
        self, bootstrap_servers: str, timeout: float = 10.0, security: KafkaSecurity = PLAINTEXT
    ) -> None:
        self.timeout = timeout
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            linger_ms=0,
            retries=5,
            max_block_ms=int(timeout * 1000),  # a send waiting for metadata blocks no longer either
            client_id="frtwatch-api",
            **security.kafka_python(),
        )

    def record(self, record: dict[str, Any]) -> None:
        try:
            self.producer.send(
                topics.QUERIES, key=record["request_id"].encode(), value=canonical_json(record)
            ).get(timeout=self.timeout)
        except Exception as error:
            log.error("query record %s not published: %s", record["request_id"], error)
            raise QueryLogUnavailable(str(error)) from error

    def close(self) -> None:
        self.producer.close(timeout=5)
