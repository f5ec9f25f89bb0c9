DROP TABLE {database}.audit_nodes;
