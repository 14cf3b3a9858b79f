"""faust's Kafka transport with a configurable fetch wait.

faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. A broker
that holds a fetch for the whole wait even when records arrive (tansu does)
then adds up to 1.5 s between publishing and projecting. We keep faust's
transport and change only that number.
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 50


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start() for its Fetcher
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
