-- The Merkle log's leaves in sequence order: the sink's commit point (an entry exists once its
-- leaf does) and what proofs are built from. Never expires, so retention on audit_log never
-- breaks verification. The projection answers "is this entry_id already in the log?".
CREATE TABLE {database}.audit_leaves (
    seq UInt64,
    entry_id String,
    leaf_hash FixedString(32),
    PROJECTION by_entry (SELECT entry_id, seq ORDER BY entry_id)
) ENGINE = MergeTree
ORDER BY seq;
