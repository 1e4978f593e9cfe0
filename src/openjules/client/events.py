"""Server-Sent Events read from a stream of text lines (the HTML standard's parsing, for
what the API sends: ``event``, ``id``, ``data`` and comments)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: str
    event_id: str | None


class EventDecoder:
    """Feed lines (without their line break) one at a time; a complete event comes back
    when the blank line that ends it arrives."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._event_id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._event_id = value
        return None

    def _dispatch(self) -> ServerEvent | None:
        data, event = self._data, self._event or "message"
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerEvent(event=event, data="\n".join(data), event_id=self._event_id)
