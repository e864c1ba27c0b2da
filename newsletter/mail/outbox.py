"""The dry-run transport: accepts every message and sends nothing; the run summary counts them.

Shipped in the package (not only in tests) because `send --dry-run` and the mailto-unsubscribe
reader need a `ports.Transport` that can never reach a relay.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.ports import Gate, Lookahead


class OutboxTransport:
    async def connect(self) -> OutboxTransport:
        return self

    async def send(
        self,
        sender: str,
        recipient: str,
        data: bytes,
        gate: Gate | None = None,
        body: Sequence[bytes] = (),
        ahead: Lookahead | None = None,  # nothing to write ahead: nothing is written
    ) -> str:
        if gate is not None:
            await gate()
        return "250 dry run: not sent"

    async def close(self) -> None:
        return None

    def abort(self) -> None:
        return None
