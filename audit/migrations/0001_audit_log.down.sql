DROP TABLE {database}.audit_log;
