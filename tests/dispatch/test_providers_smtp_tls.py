"""STARTTLS against the local SMTP server with a throwaway self-signed certificate."""

import datetime as dt
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.dispatch.delivery_state import DeliveryStatus as S
from services.dispatch.providers.base import EmailMessage
from services.dispatch.providers.smtp import SmtpConfig, SmtpEmailProvider
from services.gateways.smtp_server import SmtpGateway


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return d / "cert.pem", d / "key.pem"


MSG = EmailMessage("NOTICE-0001:email", "person1@example.nz", "notices@example.nz", "Test", "Body")


async def test_starttls_with_trusted_cert(cert_files):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*cert_files)
    client_ctx = ssl.create_default_context(cafile=str(cert_files[0]))
    async with SmtpGateway(host="127.0.0.1", tls_context=server_ctx, require_starttls=True) as gw:
        good = SmtpEmailProvider(
            SmtpConfig(host="localhost", port=gw.port, tls="starttls", tls_context=client_ctx)
        )
        assert (await good.send(MSG)).status is S.SENT
        await good.close()
        # Default trust store does not know our self-signed cert: technical, not recipient, failure.
        untrusted = SmtpEmailProvider(
            SmtpConfig(host="localhost", port=gw.port, tls="starttls", timeout=3)
        )
        assert (await untrusted.send(MSG)).status is S.TECHNICAL_FAILURE
        # Plaintext is refused by a server that requires STARTTLS.
        plain = SmtpEmailProvider(SmtpConfig(host="localhost", port=gw.port, tls="none", timeout=3))
        r = await plain.send(MSG)
        assert (r.status, r.detail) == (S.TECHNICAL_FAILURE, "smtp-530")
        await plain.close()
    assert len(gw.messages) == 1
