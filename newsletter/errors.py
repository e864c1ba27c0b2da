"""One exception tree for the whole engine.

Callers catch `NewsletterError` to report anything the engine refused; each class also inherits
the builtin it resembles so generic handlers (``except ValueError``) keep working.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(NewsletterError, ValueError):
    """A config value is missing or wrong; the message names the key and the file."""

    def __init__(self, key: str, path: str, expected: str) -> None:
        self.key = key
        self.path = path
        self.expected = expected
        super().__init__(f"{path}: {key}: {expected}")


class InputError(NewsletterError, ValueError):
    """A file the operator handed in cannot be read; the message names it and says why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class FeedError(NewsletterError):
    """One feed could not be fetched or parsed; the run skips it and reports it."""


class AddressError(NewsletterError, ValueError):
    """An address was refused; `reason` is the validator's explanation."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"{address!r}: {reason}")


class SuppressedAddressError(AddressError):
    """The address unsubscribed or bounced and may not be made active again this way."""


class TokenError(NewsletterError, ValueError):
    """A signed link was tampered with, belongs to another purpose, or expired."""


class TokenExpiredError(TokenError):
    """The signature is genuine but older than the purpose allows."""


class StoreError(NewsletterError):
    """The subscriber store refused an operation."""


class ReadOnlyStoreError(StoreError, PermissionError):
    """A dry run tried to change the store."""


class StaleIssueError(NewsletterError):
    """The issue's send time is too far past to send without the operator's --force."""


class RenderError(NewsletterError):
    """A template failed to render or the result breaks a limit (size, missing footer)."""


class DeliveryError(NewsletterError):
    """The SMTP server did not accept a message. `code` is the reply code, 0 if none."""

    def __init__(self, message: str, code: int = 0) -> None:
        self.code = code
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """4xx, timeout or dropped connection: worth trying again later."""


class DeliveryTimeoutError(TransientDeliveryError, TimeoutError):
    """The server stalled."""


class ConnectionLostError(TransientDeliveryError, ConnectionError):
    """The connection dropped or could not be opened."""


class PermanentDeliveryError(DeliveryError):
    """5xx to RCPT or DATA: this address will not take mail from us."""


class ServerRefusedError(DeliveryError, ConnectionError):
    """The whole server is unusable (login refused, every connection refused): stop the run."""
