"""Settings from the environment (FRTWATCH_*), with defaults for one laptop.

Every server binds 127.0.0.1. Ports are configurable so a second stack (the tests') can run
beside the first.
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.kafka_security import (
    PLAINTEXT_PROTOCOL,
    KafkaSecurity,
    KafkaSecurityError,
    Role,
    password_file_name,
)


def _default_home() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "frtwatch"


def kafka_environment(bootstrap_servers: str, security: KafkaSecurity) -> dict[str, str]:
    """The FRTWATCH_* variables that point a frtwatch process at this Kafka, with the password
    files beside ``security``'s: each of its clients connects as its role's principal."""
    env = {"FRTWATCH_KAFKA_BOOTSTRAP": bootstrap_servers, "FRTWATCH_KAFKA_SECURITY": security.protocol}
    if security.secure:
        assert security.password_file is not None
        env |= {"FRTWATCH_KAFKA_KEYS_DIR": str(security.password_file.parent)}  # paths, not secrets
        if security.ca_file:
            env |= {"FRTWATCH_KAFKA_CA_FILE": str(security.ca_file)}
    return env


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True)
class Settings:
    home: Path  # pid files in run/, logs in logs/, data in data/
    kafka_port: int = 9092  # broker i listens on kafka_port + 100*i
    kafka_controller_port: int = 9098  # controller i on kafka_controller_port + 100*i
    brokers: int = 1  # 1, or 3 for replication 3 / min.insync.replicas 2
    kafka_bootstrap: str | None = None  # an external cluster instead of the local one
    kafka_protocol: str = PLAINTEXT_PROTOCOL  # or SASL_SSL: SCRAM users over TLS
    kafka_username: str | None = None  # SASL user for every client; default each role's principal
    kafka_password_file: Path | None = None  # default kafka_keys_dir/kafka-<user>.password
    kafka_keys_dir: Path | None = None  # the principals' password files; default home/keys
    kafka_role: Role | None = None  # this process's Kafka role (stream_processors.app: processor)
    kafka_ca_file: Path | None = None  # PEM CA of the brokers; default home/tls/kafka-ca.pem
    events_partitions: int = 6
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    clickhouse_url: str | None = None  # http(s)://host:8123 for a server; default: embedded chDB
    packs: tuple[str, ...] = ()  # active policy packs; empty: every pack that ships
    pack_extensions: Path | None = None  # a deployment's extension lists
    keys_file: Path | None = None  # the key registry (contracts/keyring.py); set, signatures are required
    unsigned_operators: tuple[str, ...] = ()  # with a registry: operators whose unkeyed sources may not sign
    grace_seconds: float = 10.0  # event time to wait for late consents and registrations
    revision_hours: float = 24.0  # event time within which a later fact revises verdicts (0: never)
    revision_evidence: int = 200_000  # decided events a worker keeps for revisions, at most (all lanes)
    stall_seconds: float = 60.0  # a worker whose recovery or a lane of it is stuck this long starts over
    audit_retention_days: int | None = None  # audit entry bodies expire after this; None: kept
    api_port: int = 8088  # the regulators' API
    processor_metrics_port: int = 9100  # /metrics of `frtwatch process` (0: none)
    audit_metrics_port: int = 9101  # /metrics of the audit sink (`audit sink` or `api serve`)
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 only inside a container
    alertmanager_url: str | None = None  # where violations are pushed; default the local one, "" none
    api_url: str | None = None  # the regulators' API, for evidence links; default the local one
    api_access_file: Path | None = None  # tokens, roles, jurisdictions; default home/api-access.yaml
    api_rate: float = 20.0  # API calls a second per principal, sustained (token bucket)
    api_burst: int = 200  # ...and at once
    api_anonymous_rate: float = 1.0  # per address, for calls without a known token
    api_anonymous_burst: int = 30

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        env = os.environ
        settings = cls(
            home=Path(env.get("FRTWATCH_HOME") or _default_home()),
            kafka_port=int(env.get("FRTWATCH_KAFKA_PORT", 9092)),
            kafka_controller_port=int(env.get("FRTWATCH_KAFKA_CONTROLLER_PORT", 9098)),
            brokers=int(env.get("FRTWATCH_KAFKA_BROKERS", 1)),
            kafka_bootstrap=env.get("FRTWATCH_KAFKA_BOOTSTRAP") or None,
            kafka_protocol=(env.get("FRTWATCH_KAFKA_SECURITY") or PLAINTEXT_PROTOCOL).upper(),
            kafka_username=env.get("FRTWATCH_KAFKA_USERNAME") or None,
            kafka_password_file=_path(env.get("FRTWATCH_KAFKA_PASSWORD_FILE")),
            kafka_keys_dir=_path(env.get("FRTWATCH_KAFKA_KEYS_DIR")),
            kafka_ca_file=_path(env.get("FRTWATCH_KAFKA_CA_FILE")),
            events_partitions=int(env.get("FRTWATCH_EVENTS_PARTITIONS", 6)),
            prometheus_port=int(env.get("FRTWATCH_PROMETHEUS_PORT", 9090)),
            alertmanager_port=int(env.get("FRTWATCH_ALERTMANAGER_PORT", 9093)),
            clickhouse_url=env.get("FRTWATCH_CLICKHOUSE_URL") or None,
            packs=tuple(p for p in env.get("FRTWATCH_PACKS", "").split(",") if p),
            pack_extensions=_path(env.get("FRTWATCH_PACK_EXTENSIONS")),
            keys_file=_path(env.get("FRTWATCH_KEYS_FILE")),
            unsigned_operators=tuple(o for o in env.get("FRTWATCH_UNSIGNED_OPERATORS", "").split(",") if o),
            grace_seconds=float(env.get("FRTWATCH_GRACE_SECONDS", 10)),
            revision_hours=float(env.get("FRTWATCH_REVISION_HOURS", 24)),
            revision_evidence=int(env.get("FRTWATCH_REVISION_EVIDENCE", 200_000)),
            stall_seconds=float(env.get("FRTWATCH_STALL_SECONDS", 60)),
            audit_retention_days=int(env["FRTWATCH_AUDIT_RETENTION_DAYS"])
            if env.get("FRTWATCH_AUDIT_RETENTION_DAYS")
            else None,
            api_port=int(env.get("FRTWATCH_API_PORT", 8088)),
            processor_metrics_port=int(env.get("FRTWATCH_PROCESSOR_METRICS_PORT", 9100)),
            audit_metrics_port=int(env.get("FRTWATCH_AUDIT_METRICS_PORT", 9101)),
            metrics_host=env.get("FRTWATCH_METRICS_HOST") or "127.0.0.1",
            alertmanager_url=env.get("FRTWATCH_ALERTMANAGER_URL"),
            api_url=env.get("FRTWATCH_API_URL") or None,
            api_access_file=_path(env.get("FRTWATCH_API_ACCESS")),
            api_rate=float(env.get("FRTWATCH_API_RATE", 20)),
            api_burst=int(env.get("FRTWATCH_API_BURST", 200)),
            api_anonymous_rate=float(env.get("FRTWATCH_API_ANONYMOUS_RATE", 1)),
            api_anonymous_burst=int(env.get("FRTWATCH_API_ANONYMOUS_BURST", 30)),
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        settings.kafka_security_for(Role.DEVICE)  # an unknown protocol is an error here, not later
        if settings.brokers not in (1, 3):
            raise ValueError(f"brokers must be 1 or 3, not {settings.brokers}")
        if settings.events_partitions < 1:
            raise ValueError("events_partitions must be at least 1")
        return settings

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        return ",".join(f"127.0.0.1:{self.kafka_port + 100 * i}" for i in range(self.brokers))

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How this process's Kafka clients connect: as its role's principal (``kafka_role``)."""
        return self.kafka_security_for(self.kafka_role)

    def kafka_security_for(self, role: Role | None) -> KafkaSecurity:
        """How a client in ``role`` connects (FRTWATCH_KAFKA_SECURITY): with sasl_ssl, as the
        role's principal unless FRTWATCH_KAFKA_USERNAME names another for every client."""
        if self.kafka_protocol == PLAINTEXT_PROTOCOL:
            return KafkaSecurity()
        username = self.kafka_username or (role.principal if role else None)
        if username is None:
            raise KafkaSecurityError("a Kafka client over sasl_ssl needs a role or FRTWATCH_KAFKA_USERNAME")
        keys = self.kafka_keys_dir or self.home / "keys"
        return KafkaSecurity(
            self.kafka_protocol,
            username,
            self.kafka_password_file or keys / password_file_name(username),
            self.kafka_ca_file or self.home / "tls" / "kafka-ca.pem",
        )

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{self.home / 'data' / 'clickhouse'}"

    @property
    def audit_key_file(self) -> Path:
        """The audit log's Ed25519 signing key (created on first use, mode 0600)."""
        return self.home / "keys" / "audit-ed25519.key"

    @property
    def alert_push_url(self) -> str:
        """Alertmanager's base URL for pushed violations ("" : pushing is off)."""
        if self.alertmanager_url is not None:
            return self.alertmanager_url.rstrip("/")
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def evidence_url(self) -> str:
        return (self.api_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    @property
    def api_access(self) -> Path:
        return self.api_access_file or self.home / "api-access.yaml"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"
