"""SparkQL ``_filter`` values built from Python, every value quoted and escaped.

Portals paste what visitors type (a city, a price) into their filters; built by hand,
``f"City Eq '{city}'"`` lets ``Fargo' Or ListPrice Gt '0`` rewrite the query. Built here,
input only ever becomes a value::

    from flask_spark.sparkql import field

    query = (field("City") == city) & field("ListPrice").between(low, high)
    spark_api.get("/listings", _filter=query)   # City Eq 'Fargo' And ListPrice Bt 1,2

Operators: ``==`` / :meth:`Field.eq` (``Eq``; a list means any of them), ``!=`` (``Ne``),
``>`` ``>=`` ``<`` ``<=`` (``Gt Ge Lt Le``), :meth:`Field.between` (``Bt``); ``&``
(``And``), ``|`` (``Or``), ``~`` (``Not``), with parentheses wherever a part is itself
compound. Values: ``str`` (quoted, ``'`` and ``\\`` escaped), ``int``, ``float`` and
``Decimal`` (finite), ``bool`` (``true``/``false``), ``None`` (``null``),
``datetime.date`` (``2026-01-31``), ``datetime.datetime`` (ISO 8601), and lists or
tuples of those. ``str(query)`` is the SparkQL text; a raw string stays accepted wherever
``_filter=`` is.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from decimal import Decimal

__all__ = ["Expression", "Field", "Value", "all_of", "any_of", "field", "literal"]

#: One SparkQL value.
Scalar = str | int | float | Decimal | bool | None | dt.date | dt.datetime
#: A value, or several (``Eq``/``Ne`` any of them).
Value = Scalar | list[Scalar] | tuple[Scalar, ...]

_FIELD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")


def literal(value: Scalar) -> str:
    """One value as SparkQL writes it.

    :raises TypeError: a type SparkQL has no literal for.
    :raises ValueError: a number that is not finite.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise ValueError("SparkQL numbers must be finite")
        text = format(value, "f") if isinstance(value, Decimal) else repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(repr(value)), "f")
        return text
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"SparkQL has no literal for {type(value).__name__}")


def _values(value: Value) -> str:
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("a list of values must not be empty")
        return ",".join(literal(item) for item in value)
    return literal(value)


class Expression:
    """A SparkQL expression: combine with ``&``, ``|`` and ``~``; ``str()`` is its text."""

    def __and__(self, other: Expression) -> Expression:
        return _Join("And", (self, _checked(other)))

    def __or__(self, other: Expression) -> Expression:
        return _Join("Or", (self, _checked(other)))

    def __invert__(self) -> Expression:
        return _Not(self)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<SparkQL {self.text()!r}>"

    def text(self) -> str:
        """The SparkQL text."""
        raise NotImplementedError

    def _operand(self) -> str:
        """The text as a part of a larger expression."""
        return self.text()


def _checked(other: object) -> Expression:
    if not isinstance(other, Expression):
        raise TypeError("SparkQL expressions combine only with other expressions")
    return other


class _Condition(Expression):
    def __init__(self, name: str, op: str, values: str) -> None:
        self.name, self.op, self.values = name, op, values

    def text(self) -> str:
        return f"{self.name} {self.op} {self.values}"


class _Join(Expression):
    op: str
    parts: tuple[Expression, ...]

    def __init__(self, op: str, parts: tuple[Expression, ...]) -> None:
        flat: list[Expression] = []
        for part in parts:  # (a And b) And c is a And b And c
            flat.extend(part.parts if isinstance(part, _Join) and part.op == op else [part])
        self.op, self.parts = op, tuple(flat)

    def text(self) -> str:
        return f" {self.op} ".join(part._operand() for part in self.parts)

    def _operand(self) -> str:
        return f"({self.text()})"


class _Not(Expression):
    def __init__(self, inner: Expression) -> None:
        self.inner = inner

    def text(self) -> str:
        return f"Not ({self.inner.text()})"


class Field:
    """A field of the resource (``field("City")``), compared to make a condition."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _FIELD_RE.fullmatch(name):
            raise ValueError(f"not a SparkQL field name: {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return f"field({self.name!r})"

    def _is(self, op: str, value: Value) -> Expression:
        return _Condition(self.name, op, _values(value))

    def eq(self, value: Value) -> Expression:
        """``Field Eq value`` (any of them, for a list)."""
        return self._is("Eq", value)

    def ne(self, value: Value) -> Expression:
        """``Field Ne value`` (none of them, for a list)."""
        return self._is("Ne", value)

    def gt(self, value: Scalar) -> Expression:
        """``Field Gt value``."""
        return self._is("Gt", value)

    def ge(self, value: Scalar) -> Expression:
        """``Field Ge value``."""
        return self._is("Ge", value)

    def lt(self, value: Scalar) -> Expression:
        """``Field Lt value``."""
        return self._is("Lt", value)

    def le(self, value: Scalar) -> Expression:
        """``Field Le value``."""
        return self._is("Le", value)

    def between(self, low: Scalar, high: Scalar) -> Expression:
        """``Field Bt low,high`` (both ends included)."""
        return self._is("Bt", [low, high])

    def __eq__(self, value: object) -> Expression:  # type: ignore[override]
        return self.eq(value)  # type: ignore[arg-type]

    def __ne__(self, value: object) -> Expression:  # type: ignore[override]
        return self.ne(value)  # type: ignore[arg-type]

    def __gt__(self, value: Scalar) -> Expression:
        return self.gt(value)

    def __ge__(self, value: Scalar) -> Expression:
        return self.ge(value)

    def __lt__(self, value: Scalar) -> Expression:
        return self.lt(value)

    def __le__(self, value: Scalar) -> Expression:
        return self.le(value)

    __hash__ = None  # type: ignore[assignment]


def field(name: str) -> Field:
    """The field ``name`` (letters, digits and ``_``; dotted for nested names).

    :raises ValueError: anything else, so no input can become part of the query's shape.
    """
    return Field(name)


def all_of(parts: Iterable[Expression]) -> Expression | None:
    """Every part joined by ``And``; ``None`` for no part (no filter)."""
    found = [_checked(part) for part in parts]
    if not found:
        return None
    return found[0] if len(found) == 1 else _Join("And", tuple(found))


def any_of(parts: Iterable[Expression]) -> Expression | None:
    """Every part joined by ``Or``; ``None`` for no part."""
    found = [_checked(part) for part in parts]
    if not found:
        return None
    return found[0] if len(found) == 1 else _Join("Or", tuple(found))
