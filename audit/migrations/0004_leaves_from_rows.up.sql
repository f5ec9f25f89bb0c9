-- The leaves come from the rows' own insert, so the sink writes once: each row carries its
-- leaf hash, and a materialized view copies (seq, entry_id, leaf_hash) into audit_leaves as
-- the rows land (after them: a crash in between leaves rows without leaves, which recovery
-- drops). TTL and deletes on audit_log never reach audit_leaves.
ALTER TABLE {database}.audit_log ADD COLUMN leaf_hash FixedString(32);
CREATE MATERIALIZED VIEW {database}.audit_leaves_from_log TO {database}.audit_leaves
AS SELECT seq, entry_id, leaf_hash FROM {database}.audit_log;
