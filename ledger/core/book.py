"""Order book sides and the TP/SL trigger list: sorted price levels, FIFO inside a level.

A side keeps a sorted list of level keys (price for asks, -price for bids, so
the best level is always key[0]) and a dict key -> {order id: None}. Orders
enter a level in priority order (priority is a seq, and seqs only grow), so
the dict's insertion order is the time priority: iteration is (price, seq).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator


class BookSide:
    __slots__ = ("buy", "keys", "levels")

    def __init__(self, buy: bool) -> None:
        self.buy = buy
        self.keys: list[int] = []
        self.levels: dict[int, dict[int, None]] = {}

    def add(self, price: int, oid: int) -> None:
        key = -price if self.buy else price
        level = self.levels.get(key)
        if level is None:
            level = self.levels[key] = {}
            insort(self.keys, key)
        level[oid] = None

    def remove(self, price: int, oid: int) -> None:
        key = -price if self.buy else price
        level = self.levels[key]
        del level[oid]
        if not level:
            del self.levels[key]
            del self.keys[bisect_left(self.keys, key)]

    def best(self) -> int | None:
        """Best price on this side, or None when empty."""
        if not self.keys:
            return None
        k = self.keys[0]
        return -k if self.buy else k

    def first_at_best(self) -> int:
        """The order id with priority at the best level (side must be non-empty)."""
        return next(iter(self.levels[self.keys[0]]))

    def order_ids(self) -> Iterator[int]:
        """Every resting order id in (price, priority) order, best first."""
        for key in list(self.keys):
            level = self.levels.get(key)
            if level is not None:
                yield from list(level)

    def __len__(self) -> int:
        return len(self.keys)


class TriggerBook:
    """TP/SL orders held off the book, by the direction of their trigger (SPEC 8).

    `below`: fire when mark <= trigger (TP buy, SL sell); `above`: fire when
    mark >= trigger (TP sell, SL buy). Both are sorted (trigger, order id) lists.
    """

    __slots__ = ("below", "above")

    def __init__(self) -> None:
        self.below: list[tuple[int, int]] = []
        self.above: list[tuple[int, int]] = []

    def add(self, fires_below: bool, trigger: int, oid: int) -> None:
        insort(self.below if fires_below else self.above, (trigger, oid))

    def remove(self, fires_below: bool, trigger: int, oid: int) -> None:
        lst = self.below if fires_below else self.above
        i = bisect_left(lst, (trigger, oid))
        if i < len(lst) and lst[i] == (trigger, oid):
            del lst[i]

    def fired(self, mark: int) -> list[int]:
        """Ids of the orders a mark of `mark` triggers, ascending (original seq order)."""
        out = [oid for _, oid in self.below[bisect_left(self.below, (mark, -1)):]]
        out += [oid for _, oid in self.above[:bisect_left(self.above, (mark + 1, -1))]]
        out.sort()
        return out

    def __len__(self) -> int:
        return len(self.below) + len(self.above)
