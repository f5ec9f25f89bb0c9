"""The audit sink's metrics, named as stream_processors/metrics.py says (frtwatch_sink_*)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.entries = Counter(
            "frtwatch_sink_entries_written",
            "Entries appended to the audit log, by kind.",
            ["kind"],
            registry=registry,
        )
        self.repeats = Counter(
            "frtwatch_sink_repeats_dropped", "Entries already in the log, dropped by id.", registry=registry
        )
        self.batch_rows = Histogram(
            "frtwatch_sink_batch_rows",
            "Entries per write to ClickHouse.",
            buckets=(1, 10, 100, 1_000, 5_000, 10_000, 20_000, 50_000),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "frtwatch_sink_batch_seconds",
            "Time to write one batch, retries included.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.failures = Counter(
            "frtwatch_sink_write_failures", "Failed writes to ClickHouse (each retried).", registry=registry
        )
        self.kafka_errors = Counter(
            "frtwatch_sink_kafka_errors",
            "Failed reads or commits on Kafka (each retried).",
            registry=registry,
        )
        self.unreadable = Counter(
            "frtwatch_sink_unreadable_records",
            "Records on the sink's topics it could not read.",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "frtwatch_sink_consumer_lag_messages",
            "Messages on the sink's topics not yet written to the log, by topic.",
            ["topic"],
            registry=registry,
        )
        self.log_entries = Gauge("frtwatch_sink_log_entries", "Entries in the audit log.", registry=registry)
        self.log_mismatch = Gauge(
            "frtwatch_sink_log_mismatch",
            "1 when the audit log in the database differs from what the sink signed (it refuses to sign).",
            registry=registry,
        )
        for kind in ("event", "violation", "dead_letter", "query"):
            self.entries.labels(kind)
