"""faust's Kafka transport with a configurable fetch wait and changelog ends that fetches confirm.

* faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. A broker that holds a fetch for
  the whole wait even when records arrive (tansu does) then adds up to 1.5 s between publishing and
  projecting. We keep faust's transport and change only that number.
* faust restores a table by reading its changelog up to the end ``ListOffsets`` answers. tansu on
  ``s3://`` answers an end behind records it has acknowledged (by 10-50 records a second after a
  producer stopped, measured; the fetch responses' high watermark is right, as rebuild.py found), so a
  restart restored tables short of their last writes (the drift processor's ``drift-kill``). The ends of
  changelog partitions are therefore confirmed by fetching (:func:`modelog.processors.ends.fetched_ends`)
  and the later of the two is used. Source topics are untouched: faust reads them from committed offsets.
* A source partition's records reach the agent in offset order with none skipped
  (:mod:`modelog.processors.contiguous`): a fetch that moved past records not delivered is read again
  from the first of them, instead of faust counting them as an acknowledged gap; and records the agent
  never got although the broker has them (the last of a burst, lost between faust's fetch and the agent,
  with nothing after them to show the hole) are read again once the agent has waited ``Progress.idle_s``
  seconds with them outstanding (:func:`reread_stalled_records`). The agent takes each batch through
  ``async with app.consumer.working(events) as events``, which holds back records past a hole and reads the
  partition again from it (faust drops records after the consumer hands them over, e.g. a seek racing a
  fetch being handed over leaves faust's read offset past what the seek fetches again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from faust.transport.drivers import aiokafka as faust_aiokafka

from .contiguous import RESEEK, Contiguity, Progress
from .ends import fetched_ends

log = logging.getLogger("modelog.processors")

FETCH_MAX_WAIT_MS = 50
CHANGELOG_SUFFIX = "-changelog"


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start() for its Fetcher
        return consumer

    async def _highwaters(self, partitions):
        listed = dict(await super()._highwaters(partitions))
        settings = getattr(self.transport.app, "modelog_settings", None)
        changelogs = {(tp.topic, tp.partition): tp for tp in listed if tp.topic.endswith(CHANGELOG_SUFFIX)}
        if settings is None or not changelogs:
            return listed
        ends = await asyncio.get_running_loop().run_in_executor(
            None, fetched_ends, settings, list(changelogs),
            {key: listed[tp] for key, tp in changelogs.items() if listed[tp] is not None})
        for key, tp in changelogs.items():
            end = ends.get(key)
            if end is not None and (listed[tp] is None or end > listed[tp]):
                log.info("changelog %s/%s ends at %d, not %s as listed: restoring to the fetched end",
                         tp.topic, tp.partition, end, listed[tp])
                listed[tp] = end
        return listed


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.contiguity = Contiguity()
        self.progress = Progress()

    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _guarded(self, tp) -> bool:
        """Source partitions (acknowledged records); not changelogs, which faust reads to their end itself."""
        return not tp.topic.endswith(CHANGELOG_SUFFIX) and self.app.topics.acks_enabled_for(tp.topic)

    async def getmany(self, timeout: float):
        refused = set()  # partitions sought back during this fetch: the rest of their records come again
        async for tp, message in super().getmany(timeout):
            if tp in refused:
                continue
            if self._guarded(tp):
                action, hole = self.contiguity.decide(tp, message.offset)
                if action == RESEEK:
                    refused.add(tp)
                    log.warning("%s/%s: fetched offset %d but the next record to deliver is %d: reading again "
                                "from %d", tp.topic, tp.partition, message.offset, hole, hole)
                    await self.seek(tp, hole)
                    continue
                if hole is not None:
                    self.progress.skip_to(tp, message.offset)
                    log.warning("%s/%s: offsets %d to %d are not on the log (read %d times): continuing at %d",
                                tp.topic, tp.partition, hole, message.offset - 1, self.contiguity.confirm,
                                message.offset)
            yield tp, message

    async def seek(self, partition, offset: int) -> None:
        await super().seek(partition, offset)
        if self._guarded(partition):
            self.contiguity.sought(partition, offset)
            self.progress.sought(partition, time.monotonic())

    async def perform_seek(self) -> None:
        """faust's seek to the committed offsets (after every assignment); they are then the next expected.

        A partition without a committed offset is expected from offset 0 (the processors read from the
        earliest record): tansu does not always answer the group's committed offset (one restarted drift
        processor's Kafka consumer fetched from the committed 72 while faust's seek, 0.1 s later, was told
        there was none), and where the position came from is then unknown. Reading again from the start is
        what a new group does anyway; a log whose start was deleted shows as a hole, accepted when confirmed."""
        await super().perform_seek()
        for tp in self.assignment():
            if self._guarded(tp):
                committed = self._read_offset.get(tp)
                self.contiguity.sought(tp, 0 if committed is None else committed)
                self.progress.assigned(tp, committed, time.monotonic())
                log.info("%s/%s: reading from offset %s (the group's committed offset)", tp.topic, tp.partition,
                         0 if committed is None else committed)

    async def on_partitions_revoked(self, revoked) -> None:
        self.progress.revoked(revoked)
        await super().on_partitions_revoked(revoked)

    @asynccontextmanager
    async def working(self, events):
        """Around the agent's handling of a batch of faust events: ``async with consumer.working(events) as
        events`` gives the events it may process -- a partition's records past a hole are held back and the
        partition is read again from the hole -- and records them as processed once the block returns (not if
        it raises). The agent counts as busy meanwhile (:meth:`reread_stalled` waits for it to be idle)."""
        self.progress.started(time.monotonic())
        kept, holes = self.progress.contiguous([(e.message.tp, e.message.offset) for e in events])
        for tp, offset in holes.items():
            first = min(e.message.offset for e in events if e.message.tp == tp and e.message.offset > offset)
            log.warning("%s/%s: the processor was given offset %d but the next it needs is %d: reading again "
                        "from %d", tp.topic, tp.partition, first, offset, offset)
            await self._read_again(tp, offset)
        kept_events = [events[i] for i in kept]
        processed = False
        try:
            yield kept_events
            processed = True
        finally:
            self.progress.finished([(e.message.tp, e.message.offset) for e in kept_events], time.monotonic(),
                                   processed)

    async def reread_stalled(self) -> None:
        """Seek back each source partition whose records the broker has but the idle agent never got."""
        if self.app.rebalancing or not self.flow_active or not self.app.flow_control.is_active():
            return
        highwaters = {}
        for tp in self.assignment():
            if self._guarded(tp) and tp not in self._paused_partitions:
                try:
                    highwaters[tp] = self.highwater(tp)
                except (AssertionError, KeyError, AttributeError):  # revoked meanwhile
                    continue
        for tp, offset, highwater, accepted in self.progress.stalled(highwaters, time.monotonic()):
            if accepted:
                log.warning("%s/%s: offsets %d to %d did not arrive in %d re-reads: taken as not on the log; "
                            "continuing at %d", tp.topic, tp.partition, offset, highwater - 1,
                            self.progress.confirm, highwater)
            else:
                log.warning("%s/%s: offsets %d to %d are on the log but never reached the processor (idle "
                            "%.0f s): reading again from %d", tp.topic, tp.partition, offset, highwater - 1,
                            self.progress.idle_s, offset)
                await self._read_again(tp, offset)

    async def _read_again(self, tp, offset: int) -> None:
        """Seek ``tp`` back to ``offset``; a partition revoked meanwhile is left to its new owner, and a seek
        that fails is logged (the idle check tries again)."""
        if tp not in self.assignment():
            return
        try:
            await self.seek(tp, offset)
        except Exception as exc:  # noqa: BLE001 -- the agent must go on; the next check retries
            log.warning("%s/%s: could not seek back to %d (%s: %s); trying again when idle", tp.topic,
                        tp.partition, offset, type(exc).__name__, exc)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def reread_stalled_records(app, interval: float = 1.0) -> None:
    """Check every ``interval`` seconds for source records the agent never got (:meth:`_Consumer.reread_stalled`);
    for an app whose agent takes its batches through ``app.consumer.working(events)``."""
    @app.timer(interval)
    async def _reread_stalled() -> None:
        consumer = getattr(app, "_consumer", None)  # not started: do not create one from here
        if isinstance(consumer, _Consumer):
            await consumer.reread_stalled()
