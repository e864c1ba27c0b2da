"""Work on an issue's shared body pieces done once, for the DKIM body hash and the DATA payload.

Readers' copies of an issue share all but a few lines, and the shared ones come as the same
objects in every copy (`compose.ComposedMessage.body`). Work on such a piece (canonicalizing,
dot-stuffing) is kept by the piece's identity once it has been seen in two copies: a reader's
own lines are new objects in each copy, so they are never kept and cannot push the shared ones
out. Every entry holds its piece, so an id is not reused while it is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

SHORTEST = 256  # bytes: shorter pieces cost less to redo than to look up and keep
KEPT = 64  # pieces kept (and candidates noted) at most; an issue's template has a handful


class SharedPieces(Generic[T]):
    def __init__(self, work: Callable[[bytes], T]) -> None:
        self.work = work
        self.known: dict[int, tuple[bytes, T]] = {}  # id(piece): (piece, work done on it)
        self.seen: dict[int, bytes] = {}  # pieces seen once: kept if they come again

    def __call__(self, piece: bytes) -> T:
        known = self.known.get(id(piece))
        if known is not None:
            return known[1]
        done = self.work(piece)
        if len(piece) >= SHORTEST:
            if self.seen.pop(id(piece), None) is piece:
                _bounded(self.known)[id(piece)] = (piece, done)
            else:
                _bounded(self.seen)[id(piece)] = piece
        return done


def _bounded(memo: dict[int, T]) -> dict[int, T]:
    if len(memo) >= KEPT:
        memo.clear()
    return memo
