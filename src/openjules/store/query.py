"""Parsed list filters (AIP-160 subset) and their translation to SQL.

A filter is kept in disjunctive normal form: an OR of AND-groups of comparisons.
The API parses text into this shape; each service maps field names to columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import and_, false, or_, true
from sqlalchemy.sql.elements import ColumnElement


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True)
class Condition:
    field: str
    op: Op
    value: str


@dataclass(frozen=True)
class Filter:
    """OR of AND-groups. An empty filter matches everything."""

    groups: tuple[tuple[Condition, ...], ...] = ()

    def mentions(self, field: str) -> bool:
        return any(c.field == field for group in self.groups for c in group)


ColumnMapper = Callable[[Condition], ColumnElement[bool]]


def filter_clause(flt: Filter, mappers: Mapping[str, ColumnMapper]) -> ColumnElement[bool]:
    if not flt.groups:
        return true()
    ors: list[ColumnElement[bool]] = []
    for group in flt.groups:
        ands = [mappers[c.field](c) for c in group]
        ors.append(and_(*ands) if ands else true())
    return or_(*ors) if ors else false()
