"""Source records delivered in offset order with nothing skipped: the rule the processors' consumer keeps.

faust hands a processor the records its consumer fetches, and it assumes a fetch never moves past a record
the agent has not seen: when a fetched offset is more than one past the last one read, faust records the
range between as a *gap* (meant for compacted topics) and counts it as acknowledged, so the next commit
passes over it. On the embedded broker, a restarted drift processor's consumer does move past records: its
Recovery fetches a source partition while it restores the tables, then seeks to the committed offset, and
the records of that fetch are consumed without reaching the agent (``bench/faults.py --only drift-kill``
with the fetches logged: fetched 47-48, seek to 47, next fetch at 49). Records acknowledged and on the
log were then never measured, and the committed offset passed them (docs/reliability.md). The same run showed a
second way: a group with no committed offset (processors killed before their first commit; or the broker not
answering it) took the first record that arrived as the start, although the processors read from the earliest.
The consumer therefore expects the committed offset after a seek, and 0 when there is none (decision 0027).

:class:`Contiguity` is the bookkeeping, without I/O: per source partition, the offset the next record must
have (known after a seek or a delivery). A record past it is not delivered: the consumer seeks back to the
expected offset and reads again. A hole the broker confirms ``confirm`` times at the same offset (the
records are not on the log: compaction, transaction markers, retention) is accepted with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

DELIVER, RESEEK = "deliver", "reseek"


@dataclass
class Contiguity:
    """Per partition: the next offset expected and how often a hole at it was re-read."""

    confirm: int = 3
    expected: dict[Hashable, int] = field(default_factory=dict)
    reread: dict[Hashable, tuple[int, int]] = field(default_factory=dict)  # tp -> (expected offset, times)

    def sought(self, tp: Hashable, offset: int | None) -> None:
        """The consumer was positioned at ``offset`` (None: not known, e.g. no committed offset yet)."""
        if offset is None or offset < 0:
            self.expected.pop(tp, None)
        else:
            self.expected[tp] = offset

    def decide(self, tp: Hashable, offset: int) -> tuple[str, int | None]:
        """What to do with a fetched record at ``offset``: ``(DELIVER, None)``; ``(RESEEK, e)``: do not
        deliver it, seek the partition to ``e`` and drop the rest of this fetch for it; a hole seen
        ``confirm`` times at ``e`` is delivered (``(DELIVER, e)``: the offsets from ``e`` are missing)."""
        expected = self.expected.get(tp)
        if expected is None or offset <= expected:  # the first known position, in order, or a re-read
            self.expected[tp] = offset + 1
            if expected is not None and offset == expected:
                self.reread.pop(tp, None)
            return DELIVER, None
        at, times = self.reread.get(tp, (None, 0))
        times = times + 1 if at == expected else 1
        if times >= self.confirm:
            self.reread.pop(tp, None)
            self.expected[tp] = offset + 1
            return DELIVER, expected
        self.reread[tp] = (expected, times)
        return RESEEK, expected


__all__ = ["Contiguity", "DELIVER", "RESEEK"]
