DROP VIEW {database}.audit_leaves_from_log;
ALTER TABLE {database}.audit_log DROP COLUMN leaf_hash;
