"""The audit log in ClickHouse, its tamper evidence, and the regulators' API."""
