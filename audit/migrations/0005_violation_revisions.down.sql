ALTER TABLE {database}.audit_log DROP INDEX by_violation;
ALTER TABLE {database}.audit_log DROP COLUMN status;
ALTER TABLE {database}.audit_log DROP COLUMN violation_id;
