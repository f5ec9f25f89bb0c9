"""docker-compose's Kafka with SASL/SCRAM over TLS (docker-compose.sasl-ssl.yml): the secrets
volume its broker and frtwatch's services share, written by `frtwatch stack kafka-secrets`.
Each service mounts one folder of it, clients/<role>: its role's password and the CA, so it can
connect as that role's principal and no other."""

import os
from pathlib import Path

from core.kafka_security import Role, scram_jaas
from frtwatch.stack.kafka import new_cluster_id
from frtwatch.stack.kafka_secrets import KafkaSecrets, write_private


def write_compose_secrets(directory: Path, hosts: tuple[str, ...], owner: int | None) -> KafkaSecrets:
    """The kafka-secrets volume of docker-compose's SASL/SCRAM option: besides the certificates
    and passwords, the broker's JAAS file, its storage-format arguments (the SCRAM users), a
    cluster id, and the admin's client properties for Kafka's own scripts (the health check).
    ``owner``: the uid the broker runs as (the apache/kafka image's is 1000)."""
    secrets = KafkaSecrets.in_directory(directory, hosts)
    secrets.ensure()
    broker = secrets.broker
    jaas = scram_jaas(broker.username, broker.password())
    files = {
        "kafka-broker-jaas.conf": f"KafkaServer {{\n  {jaas}\n}};\n",
        "kafka-scram-users.args": "\n".join(secrets.scram_users()) + "\n",
        "kafka-admin.properties": "".join(
            f"{k}={v}\n" for k, v in secrets.role(Role.ADMIN).java_properties().items()
        ),
    }
    for name, text in files.items():
        write_private(directory / name, text)
    for role in Role:
        client = secrets.role(role)
        assert client.password_file is not None
        folder = client_folder(directory, role)
        write_private(folder / client.password_file.name, client.password())
        (folder / secrets.ca_file.name).write_bytes(secrets.ca_file.read_bytes())
    cluster_id = directory / "kafka-cluster-id"
    if not cluster_id.exists():
        cluster_id.write_text(new_cluster_id() + "\n")
    if owner is not None:  # the broker's user reads them; frtwatch's services run as root
        for path in directory.iterdir():
            os.chown(path, owner, -1)
    return secrets


def client_folder(directory: Path, role: Role) -> Path:
    return directory / "clients" / role.value
