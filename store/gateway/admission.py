"""A count of connections against a maximum: what a listener admits (store/gateway/http.py and
store/gateway/nbd.py; past it they refuse, each in its protocol's way)."""

from __future__ import annotations


class Admission:
    """
    >>> slots = Admission(1)
    >>> slots.enter(), slots.enter()
    (True, False)
    >>> slots.leave(); slots.enter()
    True
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def enter(self) -> bool:
        """Take a place if one is free."""
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def leave(self) -> None:
        self.held -= 1
