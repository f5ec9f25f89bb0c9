-- Every audit entry with the columns regulators filter on. Sorted by operator and time, the
-- shape of their questions ("one operator's violations for a quarter"); partitioned by month.
-- body is the entry exactly as hashed into the Merkle log (canonical JSON).
CREATE TABLE {database}.audit_log (
    seq UInt64,
    kind LowCardinality(String),
    entry_id String,
    operator_id LowCardinality(String),
    site_id Nullable(String),
    device_id Nullable(String),
    subject_ref Nullable(String),
    event_type LowCardinality(String),
    rule_id LowCardinality(String),
    severity LowCardinality(String),
    policy_pack LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC'),
    source String,
    body String,
    INDEX by_subject subject_ref TYPE bloom_filter GRANULARITY 4,
    INDEX by_device device_id TYPE bloom_filter GRANULARITY 4
) ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (operator_id, occurred_at, seq);
