"""The Kafka security settings: what each client library is given, and where the secret is not."""

import ssl
from pathlib import Path

import pytest

from frtwatch.config import Settings, kafka_environment
from frtwatch.kafka_security import PLAINTEXT, SASL_SSL, KafkaSecurity, KafkaSecurityError
from frtwatch.stack.kafka_secrets import KafkaSecrets


def test_plaintext_gives_no_options(tmp_path: Path) -> None:
    security = Settings.from_env(home=tmp_path).kafka_security
    assert security == PLAINTEXT
    assert security.kafka_python() == {} and security.java_properties() == {}
    assert security.faust_credentials() is None


def test_sasl_ssl_defaults_to_the_local_stacks_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRTWATCH_KAFKA_SECURITY", "sasl_ssl")
    security = Settings.from_env(home=tmp_path).kafka_security
    assert security.protocol == SASL_SSL and security.username == "frtwatch"
    assert security.password_file == tmp_path / "keys" / "kafka-frtwatch.password"
    assert security.ca_file == tmp_path / "tls" / "kafka-ca.pem"


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
    assert kafka_environment(settings.bootstrap_servers, settings.kafka_security) == env | {
        "FRTWATCH_KAFKA_SECURITY": SASL_SSL
    }


def test_an_unknown_protocol_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRTWATCH_KAFKA_SECURITY", "sasl_plaintext")
    with pytest.raises(ValueError, match="plaintext or sasl_ssl"):
        Settings.from_env(home=tmp_path)


def test_a_missing_password_file_is_a_clear_error(tmp_path: Path) -> None:
    security = KafkaSecurity(SASL_SSL, "frtwatch", tmp_path / "nothing-here", None)
    with pytest.raises(KafkaSecurityError, match=r"no Kafka password file at .*nothing-here"):
        security.kafka_python()


def test_each_library_gets_the_same_credentials_and_nothing_echoes_the_password(tmp_path: Path) -> None:
    client = KafkaSecurity(SASL_SSL, "frtwatch", tmp_path / "frtwatch.password", tmp_path / "ca.pem")
    secrets = KafkaSecrets.of_home(tmp_path, client)
    secrets.ensure()
    password = client.password()
    assert len(password) >= 24 and password != secrets.broker.password()
    assert (tmp_path / "frtwatch.password").stat().st_mode & 0o077 == 0
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

    client = KafkaSecurity(SASL_SSL, "frtwatch", tmp_path / "p", tmp_path / "tls" / "ca.pem")
    secrets = KafkaSecrets.of_home(tmp_path, client)
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
