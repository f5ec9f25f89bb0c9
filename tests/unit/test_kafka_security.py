"""The Kafka security settings: what each client library is given, and where the secret is not."""

import ssl
from pathlib import Path

import pytest

from contracts import topics
from core.kafka_security import PLAINTEXT, SASL_SSL, KafkaSecurity, KafkaSecurityError, Role
from core.settings import Settings, kafka_environment
from frtwatch.stack.kafka_acls import GRANTS, Grant
from frtwatch.stack.kafka_secrets import KafkaSecrets


def test_plaintext_gives_no_options(tmp_path: Path) -> None:
    security = Settings.from_env(home=tmp_path).kafka_security
    assert security == PLAINTEXT
    assert security.kafka_python() == {} and security.java_properties() == {}
    assert security.faust_credentials() is None


def test_with_sasl_ssl_each_role_connects_as_its_own_principal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRTWATCH_KAFKA_SECURITY", "sasl_ssl")
    settings = Settings.from_env(home=tmp_path)
    for role in Role:
        security = settings.kafka_security_for(role)
        assert security.protocol == SASL_SSL and security.username == f"frtwatch-{role}"
        assert security.password_file == tmp_path / "keys" / f"kafka-frtwatch-{role}.password"
        assert security.ca_file == tmp_path / "tls" / "kafka-ca.pem"
    # A process that names its role (the processor) has it by default.
    processor = Settings.from_env(home=tmp_path, kafka_role=Role.PROCESSOR).kafka_security
    assert processor.username == "frtwatch-processor"
    with pytest.raises(KafkaSecurityError, match="needs a role"):
        settings.kafka_security  # noqa: B018 - no role, no principal: never a shared default


def test_another_clusters_user_and_files_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "FRTWATCH_KAFKA_SECURITY": "SASL_SSL",
        "FRTWATCH_KAFKA_USERNAME": "ops",
        "FRTWATCH_KAFKA_PASSWORD_FILE": str(tmp_path / "ops.password"),
        "FRTWATCH_KAFKA_CA_FILE": str(tmp_path / "ca.pem"),
        "FRTWATCH_KAFKA_BOOTSTRAP": "kafka-1:9093",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(home=tmp_path)
    for role in Role:  # the override serves every role
        security = settings.kafka_security_for(role)
        assert (security.username, security.password_file) == ("ops", tmp_path / "ops.password")
        assert security.ca_file == tmp_path / "ca.pem"


def test_a_process_pointed_at_a_kafka_finds_each_roles_password_beside_the_given_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "elsewhere"
    admin = KafkaSecurity(
        SASL_SSL, "frtwatch-admin", keys / "kafka-frtwatch-admin.password", tmp_path / "ca.pem"
    )
    env = kafka_environment("kafka-1:9093", admin)
    assert env == {
        "FRTWATCH_KAFKA_BOOTSTRAP": "kafka-1:9093",
        "FRTWATCH_KAFKA_SECURITY": SASL_SSL,
        "FRTWATCH_KAFKA_KEYS_DIR": str(keys),
        "FRTWATCH_KAFKA_CA_FILE": str(tmp_path / "ca.pem"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    audit = Settings.from_env(home=tmp_path).kafka_security_for(Role.AUDIT)
    assert (
        audit.username == "frtwatch-audit" and audit.password_file == keys / "kafka-frtwatch-audit.password"
    )


def test_devices_may_write_the_events_topic_and_nothing_else() -> None:
    assert GRANTS[Role.DEVICE] == [Grant("WRITE", "TOPIC", topics.EVENTS)]
    assert GRANTS[Role.API] == [Grant("WRITE", "TOPIC", topics.QUERIES)]


def test_only_the_processor_writes_what_the_sink_logs_as_judged() -> None:
    """Accepted events and violations are written by the processor alone, queries by the API
    alone; no role but the admin (a super user) may create a topic outside its own."""
    writers = {
        name: {
            role
            for role, grants in GRANTS.items()
            for g in grants
            if g.name == name and g.operation == "WRITE"
        }
        for name in (topics.ACCEPTED, topics.VIOLATIONS, topics.DEADLETTER, topics.QUERIES)
    }
    assert writers == {
        topics.ACCEPTED: {Role.PROCESSOR},
        topics.VIOLATIONS: {Role.PROCESSOR},
        topics.DEADLETTER: {Role.PROCESSOR},
        topics.QUERIES: {Role.API},
    }
    created = {(role, g.name) for role, grants in GRANTS.items() for g in grants if g.operation == "CREATE"}
    assert created == {
        (Role.PROCESSOR, topics.LANES),
        (Role.PROCESSOR, topics.ACCEPTED),
        (Role.PROCESSOR, "frtwatch-processor-"),
    }


def test_an_unknown_protocol_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRTWATCH_KAFKA_SECURITY", "sasl_plaintext")
    with pytest.raises(ValueError, match="plaintext or sasl_ssl"):
        Settings.from_env(home=tmp_path)


def test_a_missing_password_file_is_a_clear_error(tmp_path: Path) -> None:
    security = KafkaSecurity(SASL_SSL, "frtwatch-api", tmp_path / "nothing-here", None)
    with pytest.raises(KafkaSecurityError, match=r"no Kafka password file at .*nothing-here"):
        security.kafka_python()


def test_each_library_gets_the_same_credentials_and_nothing_echoes_the_password(tmp_path: Path) -> None:
    admin = KafkaSecurity(
        SASL_SSL, "frtwatch-admin", tmp_path / "kafka-frtwatch-admin.password", tmp_path / "ca.pem"
    )
    secrets = KafkaSecrets.of_home(tmp_path, admin)
    secrets.ensure()
    client = secrets.role(Role.DEVICE)
    password = client.password()
    every = [user.password() for user in secrets.users]  # the brokers' and each role's
    assert len(every) == 1 + len(Role) and len(set(every)) == len(every)
    assert all(len(p) >= 24 for p in every) and password in every
    assert all(user.password_file.stat().st_mode & 0o077 == 0 for user in secrets.users)  # type: ignore[union-attr]
    assert secrets.server_pem.stat().st_mode & 0o077 == 0

    options = client.kafka_python()
    assert options["sasl_plain_password"] == password and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED and options["ssl_context"].check_hostname
    credentials = client.faust_credentials()
    assert credentials.password == password and password not in repr(credentials)
    assert f'password="{password}"' in client.java_properties()["sasl.jaas.config"]
    assert password not in repr(client) and password not in repr(Settings.from_env(home=tmp_path))
    assert password not in str(kafka_environment("127.0.0.1:9092", client))


def test_the_local_certificate_is_for_loopback_and_signed_by_the_local_ca(tmp_path: Path) -> None:
    from cryptography import x509

    given = KafkaSecurity(SASL_SSL, "frtwatch-admin", tmp_path / "keys" / "p", tmp_path / "tls" / "ca.pem")
    secrets = KafkaSecrets.of_home(tmp_path, given)
    client = secrets.role(Role.ADMIN)
    secrets.ensure()
    ca = x509.load_pem_x509_certificate(client.ca_file.read_bytes())  # type: ignore[union-attr]
    chain = x509.load_pem_x509_certificates(secrets.server_pem.read_bytes())
    server = chain[0]
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert b"PRIVATE KEY" in secrets.server_pem.read_bytes()
    assert b"PRIVATE KEY" not in client.ca_file.read_bytes()  # type: ignore[union-attr]
    # Created once: a second call keeps the certificates and the passwords.
    before = (secrets.server_pem.read_bytes(), client.password())
    secrets.ensure()
    assert (secrets.server_pem.read_bytes(), client.password()) == before
