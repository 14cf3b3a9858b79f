"""Readers and consumers, downstream of the log and the views.

- :mod:`~modelog.consumers.query`: SQL over the views (``modelog.sql``), in-process, through the
  running processor's endpoint, or over the lake; ``wait_projected`` (read-your-writes).
- :mod:`~modelog.consumers.alerts`: drift alerts as they happen (``modelog alerts tail``).
- :mod:`~modelog.consumers.webhook`: the at-least-once webhook forwarder (``modelog alerts webhook``).
"""
