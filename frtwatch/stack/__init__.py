"""The local stack: Kafka, Prometheus, Alertmanager and ClickHouse as plain processes on
127.0.0.1, started idempotently, health-checked, stopped cleanly (frtwatch stack up|down|status)."""

from dataclasses import dataclass

from core.kafka_security import Role
from core.settings import Settings
from frtwatch.stack import clickhouse
from frtwatch.stack.kafka import KafkaCluster
from frtwatch.stack.monitoring import Alertmanager, Prometheus
from frtwatch.stack.process import ManagedProcess, StackError, stop_all

__all__ = ["LocalStack", "StackError"]


@dataclass(frozen=True)
class LocalStack:
    settings: Settings

    @property
    def kafka(self) -> KafkaCluster:
        s = self.settings
        return KafkaCluster(
            home=s.home,
            broker_ports=tuple(s.kafka_port + 100 * i for i in range(s.brokers)),
            controller_ports=tuple(s.kafka_controller_port + 100 * i for i in range(s.brokers)),
            security=s.kafka_security_for(Role.ADMIN),  # the stack's own client
        )

    @property
    def prometheus(self) -> Prometheus:
        s = self.settings
        return Prometheus(
            s.home, s.prometheus_port, s.alertmanager_port, s.processor_metrics_port, s.audit_metrics_port
        )

    @property
    def alertmanager(self) -> Alertmanager:
        return Alertmanager(self.settings.home, self.settings.alertmanager_port)

    @property
    def processor(self) -> ManagedProcess:
        """A processor worker, when `frtwatch demo` started one."""
        return ManagedProcess("processor", self.settings.home)

    @property
    def api(self) -> ManagedProcess:
        """The regulators' API with the audit sink inside it, when `frtwatch demo` started it."""
        return ManagedProcess("api", self.settings.home)

    @property
    def pipeline(self) -> list[ManagedProcess]:
        return [self.processor, self.api]

    def up(self, monitoring: bool = True, timeout: float = 120.0) -> dict[str, str]:
        """Start what is not running, wait for health, create the topics. Returns a summary."""
        summary: dict[str, str] = {}
        if self.settings.kafka_bootstrap:
            summary["kafka"] = f"external cluster {self.settings.kafka_bootstrap} (not managed here)"
        else:
            kafka = self.kafka
            kafka.start(timeout)
            created = kafka.create_topics(self.settings.events_partitions)
            topics = ", ".join(f"{name} ({count}p)" for name, count in created.items())
            summary["kafka"] = f"{kafka.bootstrap_servers}, {kafka.size} broker(s); topics {topics}"
            if kafka.security.secure:
                security = kafka.security
                assert security.password_file is not None
                summary["kafka security"] = (
                    f"SASL_SSL ({security.mechanism}) with ACLs, a principal per role, passwords in "
                    f"{security.password_file.parent}, CA {security.ca_file}"
                )
        if monitoring:
            self.alertmanager.start()
            summary["alertmanager"] = self.alertmanager.url
            self.prometheus.start()
            summary["prometheus"] = self.prometheus.url
        dsn = self.settings.clickhouse_dsn
        owner = self.api.pid() if dsn.startswith("chdb://") else None
        if owner is not None:  # chDB lets one process open its folder: the API's is in use
            summary["clickhouse"] = f"{clickhouse.describe(dsn)} (open in the API, pid {owner})"
        else:
            summary["clickhouse"] = f"{clickhouse.describe(dsn)} (ClickHouse {clickhouse.check(dsn)})"
        summary["logs"] = str(self.settings.logs_dir)
        return summary

    def down(self, timeout: float = 60.0) -> list[str]:
        """Stop everything this stack started (whatever its broker count); return what was running."""
        # The pipeline first: it would only log errors while Kafka goes away.
        stopped = stop_all(self.pipeline, timeout)
        stopped += stop_all([self.prometheus.process, self.alertmanager.process], timeout)
        return stopped + stop_all(self._kafka_nodes(), timeout)

    def _kafka_nodes(self) -> list[ManagedProcess]:
        """The Kafka nodes with a pid file, and at least those of the configured size."""
        running = {path.stem for path in (self.settings.home / "run").glob("kafka-*.pid")}
        names = sorted(running | {node.name for node in self.kafka.nodes()})
        return [ManagedProcess(name, self.settings.home) for name in names]

    def status(self) -> dict[str, str]:
        processes = [*self._kafka_nodes(), self.alertmanager.process, self.prometheus.process, *self.pipeline]
        report = {}
        for process in processes:
            pid = process.pid()
            report[process.name] = f"running (pid {pid})" if pid else "stopped"
        report["clickhouse"] = clickhouse.describe(self.settings.clickhouse_dsn)
        report["logs"] = str(self.settings.logs_dir)
        return report
