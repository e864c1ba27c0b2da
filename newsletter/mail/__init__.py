"""The mail wing: SMTP out (with RFC 2920 pipelining), DKIM, the dry-run outbox, and mail back in.

Everything here is handed to the core through `ports`; the core never imports this package.
"""

from __future__ import annotations

from newsletter.clock import Clock
from newsletter.config import DkimConfig
from newsletter.ports import Signer


def dkim_signer(config: DkimConfig, clock: Clock) -> Signer | None:
    """The DKIM signer for `[dkim]` (keys read and checked once), or None when signing is off.

    dkimpy is imported only here and only when a selector is set: a send without DKIM starts
    faster without it.
    """
    if not (config.selector or config.ed25519_selector):
        return None
    from newsletter.mail.dkim import DkimSigner

    signer = DkimSigner.from_config(config, clock)  # also refuses Ed25519 without RSA
    return signer.sign if signer else None
