"""SMTP (aiosmtplib) and the dry-run outbox, behind the `ports.Transport` interface.

This is the only module that knows aiosmtplib: it turns every library error into one of ours,
so the delivery policy above it decides on "transient", "permanent" or "stop the run" alone.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import aiosmtplib

from .config import SmtpConfig
from .errors import (
    ConnectionLostError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentDeliveryError,
    ServerRefusedError,
    TransientDeliveryError,
)


def _by_code(message: str, code: int) -> DeliveryError:
    if 500 <= code < 600:
        return PermanentDeliveryError(message, code)
    return TransientDeliveryError(message, code)


def translate(exc: Exception) -> DeliveryError:
    """Map an aiosmtplib error onto our tree; the reply code and text survive."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return ServerRefusedError(f"login refused: {exc.code} {exc.message}", exc.code)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return DeliveryTimeoutError(f"timed out: {exc}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0]
        return _by_code(f"{first.code} {first.message}", first.code)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return ServerRefusedError(f"sender refused: {exc.code} {exc.message}", exc.code)
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return ConnectionLostError(f"refused at connect: {exc.code} {exc.message}", exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(f"{exc.code} {exc.message}", exc.code)
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError)):
        return ConnectionLostError(f"connection lost: {exc}")
    return TransientDeliveryError(f"{type(exc).__name__}: {exc}")


class SmtpConnection:
    """One persistent SMTP session; a failed one is closed and must be replaced by the caller."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client

    async def send(self, sender: str, recipient: str, data: bytes) -> str:
        try:
            _, reply = await self.client.sendmail(sender, [recipient], data)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise translate(exc) from exc
        return reply

    async def close(self) -> None:
        if self.client.is_connected:
            try:
                await self.client.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.client.close()


class SmtpTransport:
    """Opens sessions to the configured relay: STARTTLS, implicit TLS or plain, optional login."""

    def __init__(self, config: SmtpConfig, tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.tls_context = tls_context

    def _client(self) -> aiosmtplib.SMTP:
        cfg = self.config
        return aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            timeout=cfg.timeout,
            use_tls=cfg.tls == "tls",
            start_tls=cfg.tls == "starttls",
            tls_context=self.tls_context,
            username=cfg.username or None,
            password=cfg.password or None if cfg.username else None,
        )

    async def connect(self) -> SmtpConnection:
        client = self._client()
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise translate(exc) from exc
        return SmtpConnection(client)


@dataclass
class OutboxTransport:
    """The dry-run transport: accepts everything, sends nothing, keeps count and a sample."""

    sent: int = 0
    total_bytes: int = 0
    first: bytes | None = None
    recipients: list[str] = field(default_factory=list)
    keep_recipients: bool = False

    async def connect(self) -> OutboxTransport:
        return self

    async def send(self, sender: str, recipient: str, data: bytes) -> str:
        self.sent += 1
        self.total_bytes += len(data)
        if self.first is None:
            self.first = data
        if self.keep_recipients:
            self.recipients.append(recipient)
        return "250 dry run: not sent"

    async def close(self) -> None:
        return None
