"""Many values as one parameter on PostgreSQL: an import's reads and inserts, a ledger group.

psycopg finds a statement's placeholders with a regular expression on every run of a statement
longer than its cache admits (4 KB or 50 parameters), ~1.5 us a placeholder: with one
placeholder a value, that was half of an import's time on PostgreSQL. An array is one
placeholder, and the statement's text is the same for any number of values.

A list of strings psycopg writes element by element, a regular expression each to decide
whether it needs quotes (~590,000 searches in a 100,000-line import). `text_array` writes the
array's text itself, every element in quotes, and PostgreSQL parses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa


class _TextArray(sa.types.UserDefinedType[str]):
    """A text[] parameter handed over as its text, `$1::TEXT[]` in the statement: psycopg sends
    the text as of unknown type and PostgreSQL reads it as the array, a value the planner can
    see into. Cast from a text parameter (what `sa.cast` renders on psycopg) the array is
    worked out per row instead, and `= ANY` of 1,000 addresses then scanned a 50,000-row table in
    5.5 s where the same array as a value took milliseconds (a hashed lookup, or the index)."""

    cache_ok = True
    render_bind_cast = True

    def get_col_spec(self, **kw: Any) -> str:
        return "TEXT[]"


def text_array(values: Sequence[str]) -> sa.ColumnElement[Any]:
    """`values` as one text[] parameter, written in PostgreSQL's array input syntax.

    Within double quotes only a backslash and a double quote are special (each is escaped
    with a backslash), so braces, commas, spaces, an empty string and the word NULL all stay
    the strings they are. The array is unbounded text: a cast to varchar(n)[] would cut a
    longer element short without a word, where the column it goes into refuses it.
    """
    if not values:
        literal = "{}"
    else:
        if _needs_escapes("".join(values)):
            values = [_escaped(value) for value in values]
        literal = '{"' + '","'.join(values) + '"}'
    return sa.bindparam(None, literal, type_=_TextArray())


def _needs_escapes(text: str) -> bool:
    return "\\" in text or '"' in text


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _array(values: Iterable[Any], element: sa.types.TypeEngine[Any]) -> sa.ColumnElement[Any]:
    """Strings for a string column as `text_array`; anything else as a list psycopg writes,
    typed as the column's array (ids, NULLs, no values at all, or strings meant for another
    type, which the server converts as the column's type says: an empty text[] or '1' as
    text against an integer column is an error, and a case-insensitive type would compare as
    text)."""
    values = list(values)
    plain = isinstance(element, sa.String) and not isinstance(element, sa.Enum)
    if plain and values and all(type(value) is str for value in values):
        return text_array(values)
    return sa.bindparam(None, values, type_=sa.ARRAY(element))


def any_of(
    dialect: str, column: sa.ColumnElement[Any], values: Iterable[Any]
) -> sa.ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`, one parameter for them all."""
    if dialect == "postgresql":
        return column == sa.any_(_array(values, column.type))
    return column.in_(list(values))


def unnested(
    table: sa.Table,
    names: Sequence[str],
    values: Sequence[list[Any]] | None = None,
    *,
    constants: Mapping[str, Any] | None = None,
) -> sa.Select[Any]:
    """Rows made of one array a column, unnested (PostgreSQL), in the arrays' order.

    A statement of any number of rows then has one placeholder a column. Without `values`
    each array is a parameter named after its column, bound at every run and typed as the
    table's column, so a column of nothing but NULLs still has a type. `constants` (after
    `names`, in their order) are one value for every row, written once.
    """
    arrays = [
        sa.bindparam(name, type_=sa.ARRAY(table.c[name].type))
        if values is None
        else _array(values[n], table.c[name].type)
        for n, name in enumerate(names)
    ]
    rows = sa.func.unnest(*arrays).table_valued(*names).render_derived()
    same = [
        sa.bindparam(None, value, type_=table.c[name].type).label(name)
        for name, value in (constants or {}).items()
    ]
    return sa.select(*(rows.c[name] for name in names), *same)
