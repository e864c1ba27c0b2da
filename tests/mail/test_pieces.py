"""Work on an issue's shared body pieces is kept by identity, and only for shared pieces.

A send hands every copy's body over as pieces: the template's own (the same objects in every
copy) and the reader's own lines (new objects each time). Over a long send the shared pieces'
work must be done a fixed number of times, however many readers, and the readers' own lines
must never be kept, whatever their length.
"""

from __future__ import annotations

from collections import Counter

from newsletter.mail.pieces import KEPT, SHORTEST, SharedPieces


class Counted:
    """The work: upper-casing, counted per piece text."""

    def __init__(self) -> None:
        self.calls: Counter[bytes] = Counter()

    def __call__(self, piece: bytes) -> bytes:
        self.calls[piece] += 1
        return piece.upper()


def test_over_a_long_send_shared_pieces_are_worked_twice_and_readers_own_never_kept() -> None:
    work = Counted()
    pieces = SharedPieces(work)
    shared = [bytes([97 + n]) * (SHORTEST + n) for n in range(3)]  # the template's, long
    for reader in range(2000):
        own = f"reader {reader} ".encode() * 40  # long too, but a new object every copy
        for piece in (shared[0], own, shared[1], shared[2]):
            assert pieces(piece) == piece.upper()
    assert [work.calls[piece] for piece in shared] == [2, 2, 2]  # first sight, then kept
    assert {id(piece) for piece, _ in pieces.known.values()} == {id(p) for p in shared}
    assert len(pieces.seen) <= KEPT


def test_an_equal_piece_that_is_another_object_is_worked_again() -> None:
    work = Counted()
    pieces = SharedPieces(work)
    text = b"x" * SHORTEST
    for _ in range(3):
        pieces(bytes(bytearray(text)))  # equal bytes, a new object each time
    assert work.calls[text] == 3 and pieces.known == {}


def test_short_pieces_are_never_kept() -> None:
    work = Counted()
    pieces = SharedPieces(work)
    short = b"y" * (SHORTEST - 1)
    for _ in range(5):
        pieces(short)
    assert work.calls[short] == 5 and pieces.known == {} and pieces.seen == {}


def test_no_more_than_a_handful_are_kept_or_noted() -> None:
    pieces = SharedPieces(Counted())
    many = [bytes([n % 256]) * SHORTEST + str(n).encode() for n in range(3 * KEPT)]
    for piece in many:  # each seen twice in a row: kept, until the memo is full
        pieces(piece)
        pieces(piece)
    assert 0 < len(pieces.known) <= KEPT and len(pieces.seen) <= KEPT
    for piece in many:
        pieces(piece)
    assert 0 < len(pieces.known) <= KEPT and len(pieces.seen) <= KEPT
