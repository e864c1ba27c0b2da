"""PostgreSQL arrays written as text (`store.arrays`): whatever the strings, the server reads
back the same strings in the same order, and `any_of` matches exactly the rows it names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.store.arrays import any_of, text_array
from newsletter.store.engine import file_engine, parse_url

HOSTILE = ['"', "\\", '\\"', "{}", '{"a"}', "a,b", " ", "  x  ", "", "NULL", "null", "é", "\t\n"]
# Whatever psycopg can send as text: no NUL (PostgreSQL's text cannot hold one) and no lone
# surrogate (it cannot be encoded as UTF-8).
STRINGS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))

metadata = sa.MetaData()
names = sa.Table("names", metadata, sa.Column("name", sa.String(320), primary_key=True))


@pytest.fixture(scope="module")
def engine(postgresql_url: str) -> Iterator[sa.Engine]:
    """The store's own engine, so its driver settings are the ones tested."""
    created = file_engine(parse_url(postgresql_url), read_only=False)
    metadata.create_all(created)
    yield created
    created.dispose()


@settings(max_examples=150, deadline=None)
@given(values=st.lists(STRINGS, max_size=12))
@example(values=HOSTILE)
@example(values=[])
@example(values=[""])
@example(values=["NULL"])
@example(values=["a\\b"])  # a backslash with no quote beside it
def test_the_server_reads_back_the_same_strings_in_order(
    engine: sa.Engine, values: list[str]
) -> None:
    with engine.connect() as conn:
        back = list(conn.scalars(sa.select(sa.func.unnest(text_array(values)))))
    assert back == values


@settings(max_examples=60, deadline=None)
@given(stored=st.sets(STRINGS, max_size=8), asked=st.lists(STRINGS, max_size=8))
@example(stored=set(HOSTILE), asked=['"', "NULL", "{}", "a", ""])
def test_any_of_matches_exactly_the_rows_it_names(
    engine: sa.Engine, stored: set[str], asked: list[str]
) -> None:
    with engine.begin() as conn:
        conn.execute(names.delete())
        if stored:
            conn.execute(names.insert(), [{"name": name} for name in stored])
        found = set(
            conn.scalars(sa.select(names.c.name).where(any_of("postgresql", names.c.name, asked)))
        )
    assert found == stored & set(asked)


def test_the_planner_sees_the_array_as_a_value(engine: sa.Engine) -> None:
    """Cast from text, the array was worked out per row: `= ANY` of 1,000 addresses then
    compared each row with every address (5.5 s on 50,000 rows) instead of a hashed lookup.
    Seen as a value, a function of it is folded to its result before the query runs."""
    values = ["a", 'b"', "c"]
    plain = sa.select(sa.func.array_length(text_array(values), 1))
    compiled = plain.compile(dialect=engine.dialect)
    params = {key: bind.value for key, bind in compiled.binds.items()}
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (VERBOSE) " + str(compiled), params).scalars()
        outputs = [line.strip() for line in plan if line.strip().startswith("Output:")]
    assert outputs == ["Output: 3"]


def test_values_match_as_the_columns_type_says_whatever_python_type_they_come_as(
    engine: sa.Engine,
) -> None:
    """No values, an id, another id, and ids given as text (which the integer column reads as
    numbers; as text[] they were an error), for an integer column."""
    number = sa.literal(7, sa.Integer)
    with engine.connect() as conn:
        for values, expected in (([], []), ([7], [7]), ([8], []), (["7", "9"], [7])):
            found = conn.scalars(sa.select(number).where(any_of("postgresql", number, values)))
            assert list(found) == expected


def test_values_may_come_as_a_stream_read_once(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(names.delete())
        conn.execute(names.insert(), [{"name": ""}, {"name": "x"}])
        asked = (name for name in ["x", "y"])
        found = list(
            conn.scalars(sa.select(names.c.name).where(any_of("postgresql", names.c.name, asked)))
        )
    assert found == ["x"]
