"""Who may open a session: the server-wide and per-address session caps.

Kept apart from the batcher, which only schedules work: admission is a policy about
addresses, and the batcher never needs to know one. Not thread-safe on its own: the batcher
calls it under its lock.
"""

from __future__ import annotations

from collections import Counter

from server.config import Config
from server.protocol import Refusal


class Admission:
    def __init__(self, config: Config) -> None:
        self._max_sessions = config.MAX_SESSIONS
        self._per_ip = config.MAX_SESSIONS_PER_IP
        self._per_address: Counter[str] = Counter()
        self._sessions = 0

    def admit(self, address: str) -> None:
        """Count one more session from `address`, or raise a Refusal saying which cap is hit."""
        if self._sessions >= self._max_sessions:
            raise Refusal("server_full", "The server has too many sessions; try later.")
        if self._per_ip and self._per_address[address] >= self._per_ip:
            raise Refusal(
                "too_many_sessions", f"At most {self._per_ip} sessions per address are allowed."
            )
        self._per_address[address] += 1
        self._sessions += 1

    def release(self, address: str) -> None:
        self._sessions -= 1
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]
