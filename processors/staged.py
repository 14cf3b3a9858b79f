"""A faust table seen through the writes of the batch in hand, sent to its changelog only when asked.

faust sends a table write to the changelog topic the moment it is made, and commits the source
offsets of a batch once the agent has moved on, whether or not those changelog records have been
acknowledged. A ``kill -9`` can then leave a state on the broker that no prefix of the source
explains: a window header counting a batch whose values were never stored, or a committed source
offset past records whose effect on the state was lost (decision 0008, "Crash-safe order").

:class:`Staged` keeps a batch's writes in memory (reads see them) and sends them in the order the
caller chooses: :meth:`send` puts the staged sets or deletes on the changelog and into the table's
store and returns the futures of their acknowledgements, which the drift processor awaits before it
sends the next group and before faust may commit the batch's source offsets.
"""

from __future__ import annotations

from typing import Any, Callable

from faust.streams import current_event

_DELETED = object()


def _current_partition() -> int:
    event = current_event()
    if event is None:
        raise RuntimeError("a staged table write needs the current event (its partition names the changelog's)")
    return event.message.partition


class Staged:
    """Dict-like view of ``table`` plus the staged writes of one batch (last write per key wins)."""

    def __init__(self, table: Any, partition: Callable[[], int] = _current_partition,
                 encode: Callable[[Any], Any] | None = None) -> None:
        """``encode``: turns a staged value into what the changelog and the store keep, at :meth:`send` (a
        value written and deleted within one batch is never encoded)."""
        self.table = table
        self._partition = partition
        self._encode = encode
        self.pending: dict[Any, tuple[int, Any]] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self.pending:
            value = self.pending[key][1]
            return default if value is _DELETED else value
        value = self.table.get(key)
        return default if value is None else value

    def __contains__(self, key: Any) -> bool:
        if key in self.pending:
            return self.pending[key][1] is not _DELETED
        return key in self.table

    def __setitem__(self, key: Any, value: Any) -> None:
        if value is None:
            raise ValueError(f"table {self.name}: key {key!r}: None is a delete on the changelog; use pop")
        self.pending[key] = (self._partition(), value)

    def pop(self, key: Any, default: Any = None) -> Any:
        value = self.get(key, default)
        self.pending[key] = (self._partition(), _DELETED)
        return value

    @property
    def name(self) -> str:
        return getattr(self.table, "name", type(self.table).__name__)

    def send(self, deletes: bool = False) -> list:
        """Send the staged sets (``deletes=False``) or the staged deletes (``True``) to the changelog, apply
        them to the table's store, and return the changelog sends' futures (resolved on the broker's
        acknowledgement). What is sent is no longer staged."""
        keys = [k for k, (_, v) in self.pending.items() if (v is _DELETED) == deletes]
        futures = []
        for key in keys:
            partition, value = self.pending.pop(key)
            if deletes:
                futures.append(self.table.send_changelog(partition, key, value=None, value_serializer="raw"))
                self.table.data.pop(key, None)
            else:
                if self._encode is not None:
                    value = self._encode(value)
                futures.append(self.table.send_changelog(partition, key, value))
                self.table.data[key] = value
        return futures

    def discard(self) -> None:
        """Forget the staged writes (the batch failed; the store keeps what was sent)."""
        self.pending.clear()


__all__ = ["Staged"]
