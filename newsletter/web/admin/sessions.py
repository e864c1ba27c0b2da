"""Admin sessions: server-side, in memory, a fresh id at every login, a CSRF token each.

The cookie holds only a random session id (256 bits). An id is issued at login and nowhere
else, and the old one (if any) is dropped then, so an id planted before login (session
fixation) never becomes a logged-in session. Each session has its own CSRF token, which every
POST form carries; the cookie is also SameSite=Strict, HttpOnly and (for an https base_url)
Secure. Sessions live in this process: a restart logs the operator out.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_SESSIONS = 64
MAX_CLIENTS = 10_000


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires: datetime


class Sessions:
    def __init__(self, lifetime: timedelta) -> None:
        self.lifetime = lifetime
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, now: datetime, replacing: str | None = None) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self.lifetime)
        with self._lock:
            if replacing:
                self._sessions.pop(replacing, None)
            self._drop_expired(now)
            while len(self._sessions) >= MAX_SESSIONS:  # the oldest goes
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None, now: datetime) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires <= now:
                del self._sessions[session_id]
                return None
        return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _drop_expired(self, now: datetime) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


def csrf_ok(session: Session, given: str) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), given.encode())


class LoginLimiter:
    """At most `limit` failed logins per client per hour (then 429 until the hour has passed).

    An attempt is counted as it starts (`attempt`) and forgiven once it succeeds: checked only
    after the slow password check, a burst of requests sent at once would all pass the limit
    before the first failure was counted. Keyed by IPv4 address or IPv6 /64 (one host holds a
    whole /64). At most MAX_CLIENTS are tracked: the oldest go first.
    """

    def __init__(self, limit: int, window: timedelta = timedelta(hours=1)) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def attempt(self, client: str, now: datetime) -> datetime | None:
        """Count an attempt by `client` at `now` as failed until `succeeded` says otherwise;
        if the client is over the limit instead, count nothing and return when it may retry."""
        with self._lock:
            failures = self._failures.pop(client, deque())
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) >= self.limit:
                self._failures[client] = failures
                return failures[0] + self.window
            failures.append(now)
            self._failures[client] = failures
            while len(self._failures) > MAX_CLIENTS:
                self._failures.pop(next(iter(self._failures)))
            return None

    def succeeded(self, client: str, at: datetime) -> None:
        """The attempt made at `at` was the right password: it is not a failure."""
        with self._lock:
            failures = self._failures.get(client)
            if failures is not None and at in failures:
                failures.remove(at)
