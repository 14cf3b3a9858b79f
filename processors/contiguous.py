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

:class:`Contiguity` sees what the consumer hands faust, not what reaches the agent: faust still drops records
after that -- a seek to the committed offsets while a fetch was being handed over left faust's read offset at
the fetch's last record, and the records the seek fetched again were dropped as already read (a drift worker
that took over a killed worker's partition got offsets 2-11, then 19: the predictions at 15-18 never reached
it; CI 2026-12-01, reproduced with the deliveries logged). :class:`Progress` keeps the same rule on the
agent's side: per source partition, the next offset the agent has not processed. A batch's records past it
are held back (not processed) and the partition is read again from it; and when the agent has been idle for
``idle_s`` seconds while the broker's high watermark (from fetch responses) is past it -- the last records of
a burst, with none after them to show the hole -- they are read again too.
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


@dataclass
class Progress:
    """Per source partition, the next offset the agent has not processed; whether the agent is working.

    ``idle_s``: how long the agent must have been waiting for records, with records on the log it has not
    processed, before they are read again. ``confirm``: re-reads at the same offset that bring nothing before
    the offsets up to the high watermark are taken as not on the log (compaction, transaction markers)."""

    idle_s: float = 2.0
    confirm: int = 3
    next: dict[Hashable, int] = field(default_factory=dict)
    busy: bool = False
    since: float = 0.0  # when the agent last started or finished a batch (monotonic seconds)
    tries: dict[Hashable, tuple[int, int]] = field(default_factory=dict)  # tp -> (offset re-read from, times)
    pending: dict[Hashable, int] = field(default_factory=dict)  # tp -> offset a hole sent it back to
    sought_at: dict[Hashable, float] = field(default_factory=dict)  # tp -> when the consumer was last sought

    def assigned(self, tp: Hashable, committed: int | None, now: float) -> None:
        """The consumer was sought to the group's committed offset (None: none): the agent needs what follows
        it, or more if it has processed beyond it (a partition it kept across a rebalance)."""
        start = 0 if committed is None or committed < 0 else committed
        self.next[tp] = max(self.next.get(tp, start), start)
        self.pending.pop(tp, None)
        self.sought(tp, now)

    def sought(self, tp: Hashable, now: float) -> None:
        """The consumer was sought (any seek): what it fetches from there gets ``idle_s`` to arrive."""
        self.sought_at[tp] = now

    def skip_to(self, tp: Hashable, offset: int) -> None:
        """The consumer accepted a hole up to ``offset`` (:class:`Contiguity`: not on the log)."""
        if tp in self.next and self.next[tp] < offset:
            self.next[tp] = offset

    def contiguous(self, offsets) -> tuple[list[int], dict[Hashable, int]]:
        """For a batch of ``(tp, offset)`` in the order the agent got them: the indexes it may process (in
        order from each partition's next offset, re-reads included) and ``{tp: next offset}`` for each
        partition whose batch skipped records: its records from the hole on are held back, to be read again --
        once per hole: records fetched before the re-read show the same hole and are held back silently."""
        ahead = dict(self.next)
        kept: list[int] = []
        holes: dict[Hashable, int] = {}
        for i, (tp, offset) in enumerate(offsets):
            if tp not in ahead:  # not a source partition of this agent (or revoked meanwhile)
                kept.append(i)
            elif tp in holes:
                continue
            elif offset <= ahead[tp]:
                kept.append(i)
                ahead[tp] = max(ahead[tp], offset + 1)
            else:
                holes[tp] = ahead[tp]
        fresh = {tp: offset for tp, offset in holes.items() if self.pending.get(tp) != offset}
        self.pending.update(fresh)
        return kept, fresh

    def revoked(self, tps) -> None:
        for tp in tps:
            self.next.pop(tp, None)
            self.tries.pop(tp, None)
            self.pending.pop(tp, None)
            self.sought_at.pop(tp, None)

    def started(self, now: float) -> None:
        """The agent took a batch."""
        self.busy, self.since = True, now

    def finished(self, offsets, now: float, processed: bool = True) -> None:
        """The agent is done with a batch of ``(tp, offset)`` records (``processed=False``: it gave up on
        them, e.g. it raised; they are still needed)."""
        if processed:
            for tp, offset in offsets:
                if tp in self.next:  # a partition revoked meanwhile is its new owner's
                    self.next[tp] = max(self.next[tp], offset + 1)
                    if self.pending.get(tp, self.next[tp]) < self.next[tp]:
                        del self.pending[tp]  # the re-read arrived
        self.busy, self.since = False, now

    def stalled(self, highwaters, now: float) -> list[tuple[Hashable, int, int, bool]]:
        """``(tp, next, high watermark, accepted)`` for each partition whose records below the broker's high
        watermark have not all reached the agent although it has been idle ``idle_s`` seconds: read it again
        from ``next``; ``accepted``: re-read ``confirm`` times in vain, the agent goes on from the high
        watermark. A partition sought less than ``idle_s`` ago is left to arrive. A check that finds some
        starts a new idle period, so the re-read has time to arrive."""
        if self.busy or now - self.since < self.idle_s:
            return []
        out = []
        for tp, hw in highwaters.items():
            nxt = self.next.get(tp)
            if now - self.sought_at.get(tp, float("-inf")) < self.idle_s:
                continue
            if hw is None or nxt is None or nxt >= hw:
                self.tries.pop(tp, None)
                continue
            at, times = self.tries.get(tp, (None, 0))
            times = times + 1 if at == nxt else 1
            if times > self.confirm:
                self.tries.pop(tp, None)
                self.next[tp] = hw
                out.append((tp, nxt, hw, True))
            else:
                self.tries[tp] = (nxt, times)
                out.append((tp, nxt, hw, False))
            self.pending.pop(tp, None)  # a hole found later at the same offset is read again anew
        if out:
            self.since = now
        return out


__all__ = ["Contiguity", "DELIVER", "Progress", "RESEEK"]
