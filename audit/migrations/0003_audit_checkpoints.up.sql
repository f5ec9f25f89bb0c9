-- Signed checkpoints (tree size, root hash, the signed note), one per signing.
CREATE TABLE {database}.audit_checkpoints (
    size UInt64,
    root FixedString(32),
    note String,
    signed_at DateTime64(3, 'UTC')
) ENGINE = MergeTree
ORDER BY size;
