-- The roots of the log's complete perfect subtrees of 2**6 leaves and more, keyed by (height,
-- index): subtree (h, i) covers the leaves [i * 2**h, (i + 1) * 2**h). The sink adds them as it
-- appends (and backfills a log written before this migration at its next start), so a proof
-- for any tree size costs O(log n) of them and one block of 64 leaves, never a
-- scan of the log. A node written twice (a replayed batch) is the same hash.
CREATE TABLE {database}.audit_nodes (
    height UInt8,
    idx UInt64,
    hash FixedString(32)
) ENGINE = ReplacingMergeTree
ORDER BY (height, idx);
