"""A faust app on modelog's transport whose consumer's fetch position jumps forward once (``python
contiguity_app.py TOPIC OUT JUMP_AFTER JUMP_TO [position|read-offset]``): the agent appends every offset it is given to OUT, and
after it has been given ``JUMP_AFTER`` it moves the Kafka consumer's position to ``JUMP_TO`` behind faust's
back, as a fetch that consumed records without delivering them does (processors/contiguous.py). ``JUMP_AFTER``
-1: right after the group's assignment, before anything is delivered (a position that did not come from a
committed offset: the group has none). ``JUMP_TO`` at the end of the topic: the records skipped are the last
ones, with nothing after them to show the hole. ``read-offset``: faust's own read offset jumps instead, as a
seek racing a fetch being handed over left it (faust then drops the records below it after the consumer
handed them over, so only the agent's side can see the hole). The agent takes its batches as the processors' agents do
(``app.consumer.working``), so records it never got are read again once it is idle."""

from __future__ import annotations

import sys
from pathlib import Path

import faust

from modelog.processors._transport import reread_stalled_records
from modelog.processors.app import new_faust_app
from modelog.wire.settings import Settings


def main() -> None:
    topic_name, out, jump_after, jump_to = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    mode = sys.argv[5] if len(sys.argv) > 5 else "position"
    settings = Settings.load()
    # a few records per poll: the rest wait in the Kafka consumer's buffer, which the jump throws away
    app = new_faust_app(settings, f"contiguity-{topic_name}", broker_max_poll_records=3)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes)
    jumped = []

    async def jump(tp) -> None:  # in the consumer's thread, where the Kafka consumer lives
        consumer = app.consumer._thread._ensure_consumer()
        consumer.seek(tp, jump_to)

    @app.agent(topic)
    async def record(stream):
        async for events in stream.take_events(3, within=0.05):
            async with app.consumer.working(events) as kept:
                with out.open("a") as fh:
                    fh.writelines(f"{e.message.offset}\n" for e in kept)
            if not jumped and any(e.message.offset >= jump_after for e in events):
                jumped.append(True)
                tp = events[0].message.tp
                if mode == "read-offset":
                    app.consumer._read_offset[tp] = jump_to
                    with out.open("a") as fh:
                        fh.write("jumped\n")
                    continue
                from aiokafka import TopicPartition
                await app.consumer._thread.call_thread(jump, TopicPartition(tp.topic, tp.partition))
                with out.open("a") as fh:
                    fh.write("jumped\n")

    reread_stalled_records(app)

    if jump_after < 0:
        @app.on_rebalance_complete.connect
        async def _assigned(sender, **kwargs) -> None:
            if not jumped:
                jumped.append(True)
                from aiokafka import TopicPartition
                await app.consumer._thread.call_thread(jump, TopicPartition(topic_name, 0))
                with out.open("a") as fh:
                    fh.write("jumped\n")

    faust.Worker(app, loglevel="info", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
