"""The JSON codec of Socket.IO packets: undecodable text becomes an answerable event.

With plain `json`, python-socketio drops a message it cannot decode without an answer and
logs a traceback for each one, which a hostile client can repeat at will. Installed by
server.patches.use_json.
"""

from __future__ import annotations

import json
import re
from typing import Any


class Undecodable:
    """Stands in for a message whose JSON the server cannot decode (see `WireJson`)."""

    def __init__(self, message: str) -> None:
        self.message = message


_EVENT_NAME = re.compile(r'\s*\[\s*"([A-Za-z_]{1,32})"')

# The most compact JSON re-encoding of a decoded text has at most this many characters per
# character of that text: an astral character (1) becomes a \uXXXX\uXXXX pair (12) under
# ensure_ascii; a number grows at most 4.5x ("1e15" -> "1000000000000000.0"); anything else
# re-encodes to at most its own length (whitespace and redundant escapes only shrink).
MAX_REENCODED_GROWTH = 12


class JsonObject(dict):
    """An event's JSON object payload that remembers the length of the message text it was
    decoded from (the whole Socket.IO packet, so an upper bound for the payload alone).

    `Handlers._checked` uses it to skip re-encoding payloads that are far below
    MAX_PAYLOAD_BYTES, which was the largest cost of a snapshot handler. Payloads with
    binary attachments are rebuilt as plain dicts by python-socketio, and are measured.
    """

    __slots__ = ("text_chars",)

    def __init__(self, items: dict, text_chars: int) -> None:
        super().__init__(items)
        self.text_chars = text_chars


class WireJson:
    """The JSON module of the Socket.IO packets: `json`, except that undecodable text
    (invalid, nested deeper than Python's recursion limit, integers over 4300 digits)
    becomes the event with an `Undecodable` payload, so the client gets a `bad_payload`
    error. With plain `json` python-socketio drops such a message without an answer and
    logs a traceback for each one, which a hostile client can repeat at will. An object
    payload comes back as a `JsonObject` that knows how long the message text was."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text: str | bytes, *args: Any, **kwargs: Any) -> Any:
        try:
            value = json.loads(text, *args, **kwargs)
        except (ValueError, RecursionError) as e:
            reason = "nests too deeply" if isinstance(e, RecursionError) else "is not valid JSON"
            head = text[:64].decode(errors="replace") if isinstance(text, bytes) else text[:64]
            name = _EVENT_NAME.match(head)
            # An unknown event name is ignored by python-socketio, without a log line.
            event = name[1] if name else "undecodable"
            return [event, Undecodable(f"The message {reason}.")]
        # An event is [name, payload, ...]: tag an object payload with the text's length.
        if type(value) is list and len(value) > 1 and type(value[1]) is dict:
            value[1] = JsonObject(value[1], len(text))
        return value
