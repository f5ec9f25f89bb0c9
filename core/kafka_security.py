"""How frtwatch's Kafka clients connect: plaintext (the laptop default) or SASL/SCRAM over TLS.

One value gives each client library its own spelling of the same options (kafka-python,
aiokafka, faust, Kafka's Java tools). The password lives in a file and is read when a client
is built: it is never an argument, an environment variable or part of a repr, so it does not
reach logs, `ps` or tracebacks.
"""

import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

PLAINTEXT_PROTOCOL = "PLAINTEXT"
SASL_SSL = "SASL_SSL"
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


class Role(StrEnum):
    """Who a Kafka client is, for the broker's ACLs (frtwatch.stack.kafka_acls): each role has a
    SCRAM principal of its own, and a client asks for its role's."""

    DEVICE = "device"  # devices and back offices: write frt.events.v1, nothing else
    PROCESSOR = "processor"  # the router and the faust worker
    AUDIT = "audit"  # the audit sink
    API = "api"  # the regulators' API: its query records
    ADMIN = "admin"  # creates topics, grants ACLs; operators' tools (tail, stack check, demo)

    @property
    def principal(self) -> str:
        """The role's SCRAM user in the local stack and docker-compose."""
        return f"frtwatch-{self.value}"


def password_file_name(username: str) -> str:
    return f"kafka-{username}.password"


class KafkaSecurityError(ValueError):
    pass


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = PLAINTEXT_PROTOCOL
    username: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None  # PEM; None: the system's trusted CAs
    mechanism: str = MECHANISMS[0]

    def __post_init__(self) -> None:
        if self.protocol not in (PLAINTEXT_PROTOCOL, SASL_SSL):
            raise KafkaSecurityError(f"Kafka security must be plaintext or sasl_ssl, not {self.protocol!r}")
        if self.mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"SASL mechanism must be one of {', '.join(MECHANISMS)}")
        if self.secure and not (self.username and self.password_file):
            raise KafkaSecurityError("SASL/SCRAM needs a username and a password file")

    @property
    def secure(self) -> bool:
        return self.protocol == SASL_SSL

    def password(self) -> str:
        assert self.password_file is not None
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise KafkaSecurityError(
                f"no Kafka password file at {self.password_file} (a local stack writes it on "
                "`frtwatch stack up`; for another cluster set FRTWATCH_KAFKA_KEYS_DIR)"
            ) from None

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the broker's certificate and host name (127.0.0.1 for the local stack)."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin client."""
        if not self.secure:
            return {}
        return {
            "security_protocol": SASL_SSL,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password(),
            "ssl_context": self.ssl_context(),
        }

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients (the same names as kafka-python's)."""
        return self.kafka_python()

    def faust_credentials(self) -> Any:
        """faust's ``broker_credentials`` (None: plaintext)."""
        if not self.secure:
            return None
        import faust

        return faust.SASLCredentials(
            username=self.username,
            password=self.password(),
            ssl_context=self.ssl_context(),
            mechanism=self.mechanism,
        )

    def java_properties(self) -> dict[str, str]:
        """Client properties for Kafka's own tools (perf tools, admin scripts)."""
        if not self.secure:
            return {}
        properties = {
            "security.protocol": SASL_SSL,
            "sasl.mechanism": self.mechanism,
            "sasl.jaas.config": scram_jaas(self.username, self.password()),
        }
        if self.ca_file:
            properties |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.ca_file)}
        return properties


PLAINTEXT = KafkaSecurity()


def scram_jaas(username: str, password: str) -> str:
    module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return f'{module} required username="{username}" password="{password}";'
