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
  from the first of them, instead of faust counting them as an acknowledged gap.
"""

from __future__ import annotations

import asyncio
import logging

from faust.transport.drivers import aiokafka as faust_aiokafka

from .contiguous import RESEEK, Contiguity
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
                    log.warning("%s/%s: offsets %d to %d are not on the log (read %d times): continuing at %d",
                                tp.topic, tp.partition, hole, message.offset - 1, self.contiguity.confirm,
                                message.offset)
            yield tp, message

    async def seek(self, partition, offset: int) -> None:
        await super().seek(partition, offset)
        if self._guarded(partition):
            self.contiguity.sought(partition, offset)

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


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
