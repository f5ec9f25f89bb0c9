-- A violation may have several records (contract.md, "Verdict revisions"): the original, a
-- retraction, a late detection. Each is an entry of its own (its entry_id is the record's
-- revision id); violation_id groups them and status is the record's own, so a violation's
-- current state (its last record by seq) is one GROUP BY away. Rows written before this
-- migration are originals: their entry_id is their violation_id, and they are open.
ALTER TABLE {database}.audit_log
    ADD COLUMN violation_id String DEFAULT if(kind = 'violation', entry_id, '') AFTER entry_id;
ALTER TABLE {database}.audit_log
    ADD COLUMN status LowCardinality(String) DEFAULT if(kind = 'violation', 'open', '') AFTER violation_id;
ALTER TABLE {database}.audit_log ADD INDEX by_violation violation_id TYPE bloom_filter GRANULARITY 4;
