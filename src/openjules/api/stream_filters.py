"""List filters evaluated in Python, on what a stream is about to send.

A live stream cannot ask the database whether each new item matches its ``filter``
(that would be a query per stream per change), so the same parsed ``Filter`` the list
methods turn into SQL is evaluated here, with exactly the SQL's meaning.
"""

from __future__ import annotations

from openjules.store.query import Condition, Filter, Op
from openjules.store.sessions import SessionRecord


def _compare(left: int, op: Op, right: int) -> bool:
    match op:
        case Op.EQ:
            return left == right
        case Op.NE:
            return left != right
        case Op.LT:
            return left < right
        case Op.LE:
            return left <= right
        case Op.GT:
            return left > right
        case Op.GE:
            return left >= right


def _matches(flt: Filter, values: dict[str, int | str]) -> bool:
    """An empty filter matches everything; else any AND-group whose conditions all hold."""
    if not flt.groups:
        return True
    return any(all(_holds(c, values) for c in group) for group in flt.groups)


def _holds(cond: Condition, values: dict[str, int | str]) -> bool:
    value = values[cond.field]
    if isinstance(value, int):
        # createTime: microseconds stored, nanoseconds compared. ``us * 1000 OP ns`` is
        # what store.activities' rounding of ns to whole microseconds computes in SQL.
        return _compare(value * 1000, cond.op, int(cond.value))
    # state and archived: equality only (the filter parser allows no other operator).
    return (value == cond.value) is (cond.op is Op.EQ)


def activity_matches(flt: Filter, *, create_time_us: int) -> bool:
    return _matches(flt, {"create_time": create_time_us})


def session_matches(flt: Filter, record: SessionRecord) -> bool:
    """``state`` and ``archived``, the fields the sessions list filters on."""
    return session_fields_match(flt, state=record.state.value, archived=record.archived)


def session_fields_match(flt: Filter, *, state: str, archived: bool) -> bool:
    """``session_matches`` for a session known by its fields (e.g. as it was sent)."""
    spelled = "true" if archived else "false"  # as the filter parser spells it
    return _matches(flt, {"state": state, "archived": spelled})
