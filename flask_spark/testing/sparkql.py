"""The simulator's SparkQL: parse a ``_filter`` as the platform would, and match records.

Grammar (``Or`` binds looser than ``And``; ``Not`` applies to what follows)::

    expression := and ("Or" and)*
    and        := unary ("And" unary)*
    unary      := "Not" unary | "(" expression ")" | condition
    condition  := Field Op value ("," value)*
    Op         := Eq | Ne | Gt | Ge | Lt | Le | Bt
    value      := 'text' (\\' and \\\\ escaped) | number | 2026-01-31 | ISO datetime
                  | true | false | null

A syntax error is code 1040; a field the records do not have, code 2000; ``Bt`` without
exactly two values, code 2001.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "Join", "Not", "SparkQLError", "fields", "matches", "parse"]

_OPS = frozenset({"Eq", "Ne", "Gt", "Ge", "Lt", "Le", "Bt"})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)


class SparkQLError(ValueError):
    """A ``_filter`` the platform would refuse, with its Spark code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Join:
    op: str  # "And" or "Or"
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    inner: Node


Node = Condition | Join | Not


def _tokens(text: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise SparkQLError(1040, f"The _filter syntax is invalid near {text[at : at + 40]!r}")
        kind = match.lastgroup
        assert kind is not None
        raw = match.group(kind)
        if kind == "string":
            value: Any = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.S)
            found.append(("value", value))
        elif kind == "number":
            found.append(("value", float(raw) if "." in raw else int(raw)))
        elif kind in ("date", "datetime"):
            found.append(("value", raw))
        elif kind == "word" and raw in ("true", "false"):
            found.append(("value", raw == "true"))
        elif kind == "word" and raw == "null":
            found.append(("value", None))
        else:
            found.append((kind, raw))
        at = match.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise SparkQLError(1040, "The _filter ends too early")
        self.at += 1
        return token

    def expression(self) -> Node:
        return self._joined("Or", self.conjunction)

    def conjunction(self) -> Node:
        return self._joined("And", self.unary)

    def _joined(self, op: str, part: Callable[[], Node]) -> Node:
        parts = [part()]
        while self.peek() == ("word", op):
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else Join(op, tuple(parts))

    def unary(self) -> Node:
        token = self.take()
        if token == ("word", "Not"):
            return Not(self.unary())
        if token == ("punct", "("):
            inner = self.expression()
            if self.take() != ("punct", ")"):
                raise SparkQLError(1040, "The _filter has an unclosed parenthesis")
            return inner
        if token[0] != "word" or token[1] in ("And", "Or"):
            raise SparkQLError(1040, f"The _filter syntax is invalid near {str(token[1])!r}")
        op = self.take()
        if op[0] != "word" or op[1] not in _OPS:
            raise SparkQLError(1040, f"Unknown _filter operator {str(op[1])[:20]!r}")
        values = [self.value()]
        while self.peek() == ("punct", ","):
            self.take()
            values.append(self.value())
        if op[1] == "Bt" and len(values) != 2:
            raise SparkQLError(2001, "Bt takes exactly two values")
        if op[1] in ("Gt", "Ge", "Lt", "Le") and len(values) != 1:
            raise SparkQLError(2001, f"{op[1]} takes one value")
        return Condition(token[1], op[1], tuple(values))

    def value(self) -> Any:
        kind, value = self.take()
        if kind != "value":
            raise SparkQLError(1040, f"A _filter value was expected near {str(value)!r}")
        return value


def parse(text: str) -> Node | None:
    """The expression ``text`` stands for; ``None`` for an empty filter.

    :raises SparkQLError: with code 1040 for bad syntax.
    """
    if not text.strip():
        return None
    parser = _Parser(text)
    node = parser.expression()
    left = parser.peek()
    if left is not None:
        raise SparkQLError(1040, f"The _filter syntax is invalid near {str(left[1])!r}")
    return node


def _compare(actual: Any, op: str, values: tuple[Any, ...]) -> bool:
    def same_kind(value: Any) -> bool:
        number = (int, float)
        if isinstance(value, bool) or isinstance(actual, bool):
            return isinstance(value, bool) and isinstance(actual, bool)
        if isinstance(value, number) or isinstance(actual, number):
            return isinstance(value, number) and isinstance(actual, number)
        return type(value) is type(actual)

    if op == "Eq":
        return any(same_kind(v) and actual == v for v in values)
    if op == "Ne":
        return all(not (same_kind(v) and actual == v) for v in values)
    if not all(same_kind(v) for v in values) or actual is None:
        return False
    if op == "Bt":
        return bool(values[0] <= actual <= values[1])
    value = values[0]
    return bool(
        {"Gt": actual > value, "Ge": actual >= value, "Lt": actual < value, "Le": actual <= value}[
            op
        ]
    )


def fields(node: Node | None) -> set[str]:
    """Every field ``node`` names."""
    if node is None:
        return set()
    if isinstance(node, Join):
        return set().union(*(fields(part) for part in node.parts))
    if isinstance(node, Not):
        return fields(node.inner)
    return {node.field}


def matches(node: Node | None, record: Mapping[str, Any]) -> bool:
    """Whether ``record`` (a listing's ``StandardFields``) matches.

    :raises SparkQLError: code 2000 for a field the record does not have.
    """
    if node is None:
        return True
    if isinstance(node, Join):
        results = (matches(part, record) for part in node.parts)
        return all(results) if node.op == "And" else any(results)
    if isinstance(node, Not):
        return not matches(node.inner, record)
    if node.field not in record:
        raise SparkQLError(2000, f"Unknown field in _filter: {node.field[:40]}")
    return _compare(record[node.field], node.op, node.values)
