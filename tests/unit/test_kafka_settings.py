"""The broker's connection settings (GRIDCALL_KAFKA_SECURITY_PROTOCOL and the rest): what each
gives aiokafka, and the combinations refused with what to set. TLS itself is tested against a
broker in tests/integration/test_kafka_tls.py."""

import ssl

import pytest
from pydantic import ValidationError

from services.runtime.context import kafka_security
from services.runtime.settings import Settings
from tests.support.smtp import self_signed


def options(**settings: object) -> dict[str, object]:
    return kafka_security(Settings(kafka_bootstrap_servers="kafka:9092", **settings)).options()


def test_plaintext_is_the_default_and_adds_nothing():
    assert options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_over_tls_gives_the_credentials_and_a_context_trusting_the_ca_file(tmp_path):
    cert, _ = self_signed(tmp_path)
    given = options(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="gridcall",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=cert,
    )
    assert "s3cret" not in repr(
        kafka_security(
            Settings(
                kafka_bootstrap_servers="kafka:9092",
                kafka_security_protocol="SASL_SSL",
                kafka_sasl_username="gridcall",
                kafka_sasl_password="s3cret",
            )
        )
    )
    context = given.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "localhost"),),)]
    assert given == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "gridcall",
        "sasl_plain_password": "s3cret",
    }


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs GRIDCALL_KAFKA_SASL_USERNAME and GRIDCALL_KAFKA_SASL_PASS"),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
                "env": "prod",
                "secret_key": "k" * 40,
            },
            "sends the broker's password in clear",
        ),
        ({"kafka_ssl_certfile": __file__}, "CERTFILE and GRIDCALL_KAFKA_SSL_KEYFILE go together"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_ssl_cafile": __file__}, "TLS files are set but GRIDCALL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"}, "SASL credentials are set but"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nowhere/ca.pem"}, "kafka_ssl_cafile"),
    ],
)
def test_what_cannot_work_is_refused_saying_what_to_set(settings, says):
    with pytest.raises(ValidationError, match=says):
        Settings(kafka_bootstrap_servers="kafka:9092", **settings)
