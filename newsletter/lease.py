"""One run per issue: a renewed lease in the store, so cron on two hosts (or cron plus the
scheduler) never send the same issue at once, and a crashed run does not block the next.

The owner is "host:pid:nonce". A lease held by a process on this host that no longer exists is
taken over at once (the common crash-and-rerun case); a lease from another host runs out after
`LEASE_TTL` without renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

from .errors import IssueBusyError
from .ports import Store

LEASE_TTL = timedelta(seconds=60)


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _dead_local_owner(owner: str | None) -> bool:
    """True when `owner` names a process on this host that has exited."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim(store: Store, issue_id: int, owner: str, now: datetime) -> None:
    """Take the lease or raise IssueBusyError naming the live holder."""
    until = now + LEASE_TTL
    if store.claim_issue(issue_id, owner, until, now):
        return
    holder = _holder(store, issue_id)
    if _dead_local_owner(holder) and store.claim_issue(
        issue_id, owner, until, now, steal_from=holder
    ):
        return
    raise IssueBusyError(f"the issue is being sent by {holder or 'another run'}")


def _holder(store: Store, issue_id: int) -> str | None:
    issue = store.get_issue_by_id(issue_id)
    return issue.claimed_by if issue else None


@contextlib.asynccontextmanager
async def held(
    store: Store, issue_id: int, owner: str, clock: Callable[[], datetime]
) -> AsyncIterator[asyncio.Event]:
    """Hold the lease for the block; the yielded event is set if the lease was lost."""
    claim(store, issue_id, owner, clock())
    lost = asyncio.Event()
    renewer = asyncio.create_task(_renew(store, issue_id, owner, clock, lost))
    try:
        yield lost
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        store.release_issue(issue_id, owner)


async def _renew(
    store: Store, issue_id: int, owner: str, clock: Callable[[], datetime], lost: asyncio.Event
) -> None:
    while True:
        await asyncio.sleep(LEASE_TTL.total_seconds() / 3)
        now = clock()
        if not store.claim_issue(issue_id, owner, now + LEASE_TTL, now):
            lost.set()
            return
