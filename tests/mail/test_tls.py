"""The transport's TLS modes and login against a real aiosmtpd server with a test CA (trustme).

Only the CA is a test artefact: the client verifies the server certificate as in production.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from newsletter.cli import runtime
from newsletter.config import SmtpConfig
from newsletter.errors import ConnectionLostError, ServerRefusedError
from newsletter.mail.smtp import PipelinedConnection, SmtpTransport
from tests.support.smtp_server import SmtpServer

MESSAGE = b"From: daily@ree-news.example.com\r\nTo: ann@example.org\r\nSubject: t\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def config(port: int, tls: str, username: str = "", password: str = "") -> SmtpConfig:
    return SmtpConfig("127.0.0.1", port, tls, username, password, 5.0, 1, 0.0)


def send_one(transport: SmtpTransport, *, on_uvloop: bool = False) -> str:
    """Send one message; `on_uvloop` runs it as the CLI does (uvloop's own TLS transports)."""

    async def go() -> str:
        connection = await transport.connect()
        assert isinstance(connection, PipelinedConnection)  # the test relay offers PIPELINING
        try:
            return await connection.send("bounce@ree-news.example.com", "ann@example.org", MESSAGE)
        finally:
            await connection.close()

    return runtime.run(go()) if on_uvloop else asyncio.run(go())


class Authenticator:
    """Accepts one user; records whether the login happened inside TLS."""

    def __init__(self) -> None:
        self.logins: list[tuple[str, bool]] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        ok = data.login == b"ops" and data.password == b"s3cret"
        self.logins.append((data.login.decode(), session.ssl is not None))
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth() -> Iterator[Authenticator]:
    yield Authenticator()


@pytest.mark.parametrize("on_uvloop", [False, True])
def test_starttls_then_login_then_send(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, auth: Authenticator, on_uvloop: bool
) -> None:
    with SmtpServer(tls_context=server_tls, require_starttls=True, authenticator=auth) as smtp:
        transport = SmtpTransport(config(smtp.port, "starttls", "ops", "s3cret"), client_tls)
        assert send_one(transport, on_uvloop=on_uvloop).startswith("2.0.0")
    assert auth.logins == [("ops", True)]
    assert [m.rcpt_tos for m in smtp.messages] == [("ann@example.org",)]


@pytest.mark.parametrize("on_uvloop", [False, True])
def test_implicit_tls_from_the_first_byte(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, on_uvloop: bool
) -> None:
    with SmtpServer(implicit_tls=server_tls) as smtp:
        transport = SmtpTransport(config(smtp.port, "tls"), client_tls)
        assert send_one(transport, on_uvloop=on_uvloop).startswith("2.0.0")
    assert len(smtp.messages) == 1


def test_starttls_refuses_an_untrusted_certificate(server_tls: ssl.SSLContext) -> None:
    with SmtpServer(tls_context=server_tls, require_starttls=True) as smtp:
        transport = SmtpTransport(config(smtp.port, "starttls"))  # system CAs only
        with pytest.raises(ConnectionLostError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            send_one(transport)
    assert smtp.messages == []


def test_wrong_password_is_a_server_wide_refusal(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, auth: Authenticator
) -> None:
    with SmtpServer(tls_context=server_tls, require_starttls=True, authenticator=auth) as smtp:
        transport = SmtpTransport(config(smtp.port, "starttls", "ops", "wrong"), client_tls)
        with pytest.raises(ServerRefusedError, match="login refused"):
            send_one(transport)
    assert smtp.messages == []
