DROP TABLE {database}.audit_leaves;
