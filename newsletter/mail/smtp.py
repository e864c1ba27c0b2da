"""SMTP out through aiosmtplib, behind the `ports.Transport` interface.

Every aiosmtplib error is turned into one of ours here (`translate`), so the delivery policy
above decides on "transient", "permanent" or "stop the run" alone. `pipelining.py` takes over
a session this module opened; `wire.py` makes the DATA payload; `check` only opens and closes
sessions through `SmtpTransport`.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence

import aiosmtplib
from aiosmtplib import SMTPResponse
from aiosmtplib.protocol import SMTPProtocol

from newsletter.config.settings import SmtpConfig
from newsletter.errors import (
    ConnectionLostError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentDeliveryError,
    ServerRefusedError,
    TransientDeliveryError,
)
from newsletter.mail.pipelining import PipelinedSession, can_take_over
from newsletter.mail.wire import Stuffer
from newsletter.ports import Gate, Lookahead


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
    """One persistent SMTP session to a server without PIPELINING (the fallback).

    A failed session is closed and must be replaced by the caller. aiosmtplib opens the session
    (EHLO, STARTTLS or TLS, AUTH) and parses every reply; the mail transaction is issued command
    by command on its protocol because `sendmail` spends ~1 ms per message re-normalizing line
    endings, dot-stuffing with regular expressions and parsing addresses, work our prebuilt CRLF
    bytes do not need (see bench/send_bench.py). Servers that offer PIPELINING get
    `PipelinedConnection` instead.
    """

    def __init__(
        self, client: aiosmtplib.SMTP, timeout: float, stuffer: Stuffer | None = None
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.stuffer = stuffer or Stuffer()

    @property
    def smtputf8(self) -> bool:
        """The server's EHLO reply offered SMTPUTF8 (RFC 6531)."""
        return self.client.supports_extension("smtputf8")

    async def send(
        self,
        sender: str,
        recipient: str,
        data: bytes,
        gate: Gate | None = None,
        body: Sequence[bytes] = (),
        ahead: Lookahead | None = None,  # without PIPELINING each command waits for its reply
    ) -> str:
        params = mail_parameters(sender, recipient, data, smtputf8=self.smtputf8)
        await self._step(b"MAIL", b"FROM:<" + sender.encode() + b">" + params, server_wide=True)
        await self._step(b"RCPT", b"TO:<" + recipient.encode() + b">")
        await self._step(b"DATA", ok=354)
        await _through(gate, self.abort)
        reply = await self._call(self._finish_data(b"".join(self.stuffer(data, body))))
        if reply.code != 250:
            await self._reset()
            raise _by_code(f"DATA: {reply.code} {reply.message}", reply.code)
        return reply.message

    async def _finish_data(self, payload: bytes) -> SMTPResponse:
        protocol = self._protocol()
        protocol.write(payload)
        return await protocol.read_response(timeout=self.timeout)

    def _protocol(self) -> SMTPProtocol:
        if self.client.protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        return self.client.protocol

    async def _call(self, pending: Awaitable[SMTPResponse]) -> SMTPResponse:
        """Await one exchange, turning aiosmtplib's errors into ours (and only those)."""
        try:
            return await pending
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise translate(exc) from exc

    async def _step(self, *command: bytes, ok: int = 250, server_wide: bool = False) -> None:
        reply = await self._call(self._command(*command))
        if reply.code == ok or (ok == 250 and reply.code == 251):
            return
        await self._reset()
        message = f"{command[0].decode()}: {reply.code} {reply.message}"
        if server_wide and reply.code >= 500:
            raise ServerRefusedError(f"sender refused: {message}", reply.code)
        raise _by_code(message, reply.code)

    async def _command(self, *command: bytes) -> SMTPResponse:
        return await self._protocol().execute_command(*command, timeout=self.timeout)

    async def _reset(self) -> None:
        """After a refusal the session stays usable once RSET clears the transaction."""
        protocol = self.client.protocol
        if protocol is not None:
            try:
                await protocol.execute_command(b"RSET", timeout=self.timeout)
            except (aiosmtplib.SMTPException, OSError):
                self.client.close()

    def abort(self) -> None:
        self.client.close()

    async def close(self) -> None:
        if self.client.is_connected:
            try:
                await self.client.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.client.close()


class PipelinedConnection:
    """A session whose server offers PIPELINING: MAIL, RCPT and DATA go out in one write, and
    with `ahead` in the same write as the previous message's data (RFC 2920 3.1).

    `smtputf8`: the server's EHLO reply offered SMTPUTF8 (read before the session is taken over).
    """

    def __init__(
        self, session: PipelinedSession, *, smtputf8: bool = False, stuffer: Stuffer | None = None
    ) -> None:
        self.session = session
        self.smtputf8 = smtputf8
        self.stuffer = stuffer or Stuffer()
        self.primed: tuple[str, str] | None = None  # the next envelope, already on the wire
        self.midway = False  # a DATA is out whose transaction has not ended

    async def send(
        self,
        sender: str,
        recipient: str,
        data: bytes,
        gate: Gate | None = None,
        body: Sequence[bytes] = (),
        ahead: Lookahead | None = None,
    ) -> str:
        session = self.session
        if self.primed is None:
            session.write(self._envelope(sender, recipient, data))
            self.midway = True
        elif self.primed != (sender, recipient):  # a caller's bug; its data must not follow
            self.abort()
            raise ConnectionLostError("the next message is not the one whose envelope went out")
        self.primed = None
        mail, rcpt, start = await session.reply(), await session.reply(), await session.reply()
        accepted = mail.code == 250 and rcpt.code in (250, 251)
        if start.code == 354 and not accepted:
            session.write(b".\r\n")  # DATA was taken after a refusal: end the empty message
            await session.reply()
        elif start.code == 354:
            await _through(gate, session.abort)
            session.writelines([*self.stuffer(data, body), self._prime(ahead)])
            final = await session.reply()
            self.midway = self.primed is not None
            if final.code == 250:
                return final.message
            start = final
            if self.primed is not None:  # its DATA will be taken: RSET cannot clear that
                self.abort()
                raise _refusal(mail, rcpt, start)
        self.midway = False
        await self._reset()
        raise _refusal(mail, rcpt, start)

    def _envelope(self, sender: str, recipient: str, data: bytes) -> bytes:
        params = mail_parameters(sender, recipient, data, smtputf8=self.smtputf8)
        return b"MAIL FROM:<%s>%s\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
            sender.encode(), params, recipient.encode()
        )  # fmt: skip

    def _prime(self, ahead: Lookahead | None) -> bytes:
        """The next message's envelope, to follow this data in the same write; b"" if there
        is none yet or it cannot go (refused here before anything is written: `send` says so
        when that message's turn comes)."""
        following = ahead() if ahead is not None else None
        if following is None:
            return b""
        try:
            envelope = self._envelope(*following)
        except DeliveryError:
            return b""
        self.primed = following[:2]
        return envelope

    async def _reset(self) -> None:
        """After a refusal the session stays usable once RSET clears the transaction."""
        self.session.write(b"RSET\r\n")
        await self.session.reply()

    def abort(self) -> None:
        self.session.abort()

    async def close(self) -> None:
        """QUIT, unless a DATA is out whose transaction has not ended (an envelope written
        ahead, or a send cancelled half-way): QUIT would be read as that message's text, so
        the connection is dropped and the message never sent."""
        if self.midway:
            self.abort()
            return
        await self.session.close()


async def _through(gate: Gate | None, abort: Callable[[], None]) -> None:
    """Wait at the gate (`ports.Connection.send`); a session left half-way through DATA by a
    gate that raised (a failed commit, a forced stop) cannot be reused, so it is dropped."""
    if gate is None:
        return
    try:
        await gate()
    except BaseException:
        abort()
        raise


def _refusal(mail: SMTPResponse, rcpt: SMTPResponse, last: SMTPResponse) -> DeliveryError:
    """The first refusal of the pipelined group decides (later ones are its consequences)."""
    if mail.code != 250:
        message = f"sender refused: MAIL: {mail.code} {mail.message}"
        if mail.code >= 500:
            return ServerRefusedError(message, mail.code)
        return _by_code(message, mail.code)
    if rcpt.code not in (250, 251):
        return _by_code(f"RCPT: {rcpt.code} {rcpt.message}", rcpt.code)
    return _by_code(f"DATA: {last.code} {last.message}", last.code)


def mail_parameters(sender: str, recipient: str, data: bytes, *, smtputf8: bool) -> bytes:
    """The MAIL FROM parameters a message needs: none, or ` SMTPUTF8` (RFC 6531 3.4).

    SMTPUTF8 is asked for exactly when the envelope or the header block holds UTF-8 (an address
    with a non-ASCII local part, written raw as RFC 6532 allows), so an all-ASCII message goes
    out byte for byte as before. When the server did not offer it, that one message is refused
    here before anything is written (the session stays clean for the next reader), as a
    permanent failure with code 0: no server said it, and it is no sign of a dead mailbox.
    """
    end = data.find(b"\r\n\r\n")
    header = data if end < 0 else data[:end]
    if sender.isascii() and recipient.isascii() and header.isascii():
        return b""
    if not smtputf8:
        raise PermanentDeliveryError(
            "not sent: an address with letters outside ASCII needs SMTPUTF8 (RFC 6531), and the "
            "relay did not offer it in its EHLO reply"
        )
    return b" SMTPUTF8"


class SmtpTransport:
    """Opens sessions to the configured relay: STARTTLS, implicit TLS or plain, optional login."""

    def __init__(self, config: SmtpConfig, tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.tls_context = tls_context
        self.stuffer = Stuffer()  # the shared body pieces, stuffed once for all sessions

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

    async def connect(self) -> SmtpConnection | PipelinedConnection:
        client = self._client()
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise translate(exc) from exc
        transport = client.transport
        if client.supports_extension("pipelining") and can_take_over(transport):
            assert transport is not None
            session = PipelinedSession(transport, self.config.timeout)
            smtputf8 = client.supports_extension("smtputf8")
            return PipelinedConnection(session, smtputf8=smtputf8, stuffer=self.stuffer)
        return SmtpConnection(client, self.config.timeout, self.stuffer)
