"""Parse the AIP-160 subset the Jules API accepts into a ``store.query.Filter``.

Grammar: ``expr := and (OR and)*``, ``and := term ((AND)? term)*``,
``term := '(' expr ')' | field op value``; values are bare words or quoted strings.
Each resource declares which fields and operators it accepts and how values are checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from openjules._errors import FieldViolation, InvalidArgument
from openjules._types import State
from openjules.api.errors import snake_case
from openjules.store.clock import parse_timestamp_ns
from openjules.store.query import Condition, Filter, Op

# Bounds on what one filter may ask, checked while it is read, before any parsing: the
# parser recurses once per parenthesis, and each comparison becomes SQL (SQLite refuses
# an expression tree deeper than 1000; a DNF of MAX_GROUPS groups of MAX_TERMS stays far
# below it).
MAX_GROUPS = 64
MAX_TERMS = 64
MAX_DEPTH = 16
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\() | (?P<rparen>\)) |
        (?P<op><=|>=|!=|=|<|>|:) |
        (?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*') |
        (?P<word>[^\s()<>=!:"']+)
    )""",
    re.VERBOSE,
)
# A bare value right after an operator may contain ':' (unquoted RFC 3339 timestamps).
_BARE_VALUE = re.compile(r"""\s*(?P<word>[^\s()"']+)""")
_OPS = {"=": Op.EQ, ":": Op.EQ, "!=": Op.NE, "<": Op.LT, "<=": Op.LE, ">": Op.GT, ">=": Op.GE}


@dataclass(frozen=True)
class FieldRule:
    ops: frozenset[Op]
    # Returns the normalized value or raises ValueError with a human reason.
    normalize: Callable[[str], str]


def _bool(value: str) -> str:
    if value.lower() not in ("true", "false"):
        raise ValueError("expected true or false")
    return value.lower()


def _state(value: str) -> str:
    if value not in State.__members__:
        raise ValueError(f"expected one of {', '.join(State.__members__)}")
    return value


def _timestamp(value: str) -> str:
    return str(parse_timestamp_ns(value))


def _source_name(value: str) -> str:
    if not value.startswith("sources/"):
        raise ValueError("expected a source name like sources/github/OWNER/REPO")
    return value


EQUALITY = frozenset({Op.EQ, Op.NE})
ORDERED = frozenset(Op)

SESSION_FIELDS: Mapping[str, FieldRule] = {
    "archived": FieldRule(EQUALITY, _bool),
    "state": FieldRule(EQUALITY, _state),
}
ACTIVITY_FIELDS: Mapping[str, FieldRule] = {"create_time": FieldRule(ORDERED, _timestamp)}
SOURCE_FIELDS: Mapping[str, FieldRule] = {"name": FieldRule(EQUALITY, _source_name)}


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, FieldRule]) -> None:
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.fields = fields
        self.text = text

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        pos = 0
        depth = terms = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if tokens and tokens[-1][0] == "op" and match and match.lastgroup == "word":
                match = _BARE_VALUE.match(text, pos)
            if not match or match.end() == pos:
                self._fail(f"unexpected character at offset {pos}")
            kind = match.lastgroup or ""
            value = match.group(kind)
            if kind == "quoted":
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            elif kind == "lparen":
                depth += 1
                if depth > MAX_DEPTH:
                    self._fail(f"parentheses nest deeper than the limit of {MAX_DEPTH} levels")
            elif kind == "rparen":
                depth -= 1
            elif kind == "op":
                terms += 1
                if terms > MAX_TERMS:
                    self._fail(f"more comparisons than the limit of {MAX_TERMS}")
            tokens.append((kind, value))
            pos = match.end()
        return tokens

    def _fail(self, reason: str) -> NoReturn:
        message = f"Invalid filter: {reason}."
        raise InvalidArgument(message, field_violations=[FieldViolation("filter", message)])

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            self._fail("unexpected end of expression")
        self.pos += 1
        return token

    def parse(self) -> Filter:
        if not self.tokens:
            return Filter()
        groups = self._or()
        if (extra := self._peek()) is not None:
            self._fail(f"unexpected {extra[1]!r}")
        return Filter(tuple(groups))

    def _or(self) -> list[tuple[Condition, ...]]:
        groups = self._and()
        while (tok := self._peek()) and tok == ("word", "OR"):
            self.pos += 1
            groups = groups + self._and()
            if len(groups) > MAX_GROUPS:
                self._fail(f"more than the limit of {MAX_GROUPS} alternatives once expanded")
        return groups

    def _and(self) -> list[tuple[Condition, ...]]:
        groups = self._term()
        while (tok := self._peek()) and tok != ("word", "OR") and tok[0] != "rparen":
            if tok == ("word", "AND"):
                self.pos += 1
            right = self._term()
            groups = [a + b for a in groups for b in right]
            if len(groups) > MAX_GROUPS:
                self._fail(f"more than the limit of {MAX_GROUPS} alternatives once expanded")
        return groups

    def _term(self) -> list[tuple[Condition, ...]]:
        kind, value = self._next()
        if kind == "lparen":
            groups = self._or()
            if self._next()[0] != "rparen":
                self._fail("missing ')'")
            return groups
        if kind != "word":
            self._fail(f"expected a field name, got {value!r}")
        field = snake_case(value)
        rule = self.fields.get(field)
        if rule is None:
            allowed = ", ".join(sorted(self.fields)) or "none"
            self._fail(f"unknown field {value!r} (filterable fields: {allowed})")
        op_kind, op_text = self._next()
        if op_kind != "op":
            self._fail(f"expected an operator after {value!r}")
        op = _OPS[op_text]
        if op not in rule.ops:
            self._fail(f"operator {op_text!r} is not supported for {value!r}")
        value_kind, raw = self._next()
        if value_kind not in ("word", "quoted"):
            self._fail(f"expected a value after {value!r} {op_text}")
        try:
            normalized = rule.normalize(raw)
        except ValueError as exc:
            self._fail(f"bad value {raw!r} for {value!r}: {exc}")
        return [(Condition(field, op, normalized),)]


def parse_filter(text: str | None, fields: Mapping[str, FieldRule]) -> Filter:
    return _Parser(text or "", fields).parse()
