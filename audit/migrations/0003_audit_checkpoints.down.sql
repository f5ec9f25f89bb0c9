DROP TABLE {database}.audit_checkpoints;
