"""A Kafka's secrets for SASL/SCRAM over TLS, created once: for the local stack under its home,
for docker-compose in one volume (frtwatch.stack.compose).

A CA of its own signs one certificate for 127.0.0.1 (and any host names given) that every node
serves, to clients and to the other nodes (the controller quorum uses mutual TLS with it). The
CA's key is not kept: nothing can be signed later. Each role's principal (core.kafka_security.
Role) and the brokers' own user get random passwords, one file each. Private keys and passwords
are mode 0600.
"""

import ipaddress
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.kafka_security import MECHANISMS, SASL_SSL, KafkaSecurity, Role, password_file_name

BROKER_USER = "frtwatch-broker"  # the nodes' own user, for replication between brokers
VALIDITY = timedelta(days=3650)
NODE_NAME = "127.0.0.1"  # the certificate's common name: the nodes' principal on the controller port


@dataclass(frozen=True)
class KafkaSecrets:
    keys_dir: Path  # kafka-<user>.password of every principal
    ca_file: Path  # the CA certificate clients trust
    server_pem: Path  # the nodes' private key, certificate and CA certificate (a PEM key store)
    mechanism: str = MECHANISMS[0]
    hosts: tuple[str, ...] = ()  # DNS names of the brokers besides 127.0.0.1 and localhost

    @classmethod
    def of_home(cls, home: Path, client: KafkaSecurity) -> "KafkaSecrets":
        """The local stack's layout: the passwords beside ``client``'s, the certificates in home/tls."""
        assert client.password_file is not None and client.ca_file is not None
        server_pem = home / "tls" / "kafka-server.pem"
        return cls(client.password_file.parent, client.ca_file, server_pem, client.mechanism)

    @classmethod
    def in_directory(cls, directory: Path, hosts: tuple[str, ...] = ()) -> "KafkaSecrets":
        """Everything in one directory (docker-compose's kafka-secrets volume)."""
        return cls(directory, directory / "kafka-ca.pem", directory / "kafka-server.pem", hosts=hosts)

    def principal(self, username: str) -> KafkaSecurity:
        return KafkaSecurity(
            SASL_SSL, username, self.keys_dir / password_file_name(username), self.ca_file, self.mechanism
        )

    def role(self, role: Role) -> KafkaSecurity:
        return self.principal(role.principal)

    @property
    def broker(self) -> KafkaSecurity:
        return self.principal(BROKER_USER)

    @property
    def users(self) -> list[KafkaSecurity]:
        """Every SCRAM user the brokers are formatted with: theirs and each role's."""
        return [self.broker, *(self.role(role) for role in Role)]

    def scram_users(self) -> list[str]:
        """kafka-storage format arguments that create the brokers' and the roles' SCRAM users."""
        return [
            arg
            for user in self.users
            for arg in ("--add-scram", f"{self.mechanism}=[name={user.username},password={user.password()}]")
        ]

    def ensure(self) -> None:
        if not (self.server_pem.exists() and self.ca_file.exists()):
            self._issue_certificates()
        for user in self.users:
            assert user.password_file is not None
            if not user.password_file.exists():
                write_private(user.password_file, secrets.token_urlsafe(24) + "\n")

    def _issue_certificates(self) -> None:
        now = datetime.now(UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "frtwatch local Kafka CA")])
        ca = (
            _certificate(ca_name, ca_name, ca_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NODE_NAME)])
        dns_names = [x509.DNSName(host) for host in ("localhost", *self.hosts)]
        server = (
            _certificate(name, ca_name, key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), *dns_names]),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_private(self.server_pem, (key_pem + server.public_bytes(pem) + ca.public_bytes(pem)).decode())
        self.ca_file.parent.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(ca.public_bytes(pem))


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
