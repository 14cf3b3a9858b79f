"""The embedded broker's on-disk S3 server: ``localbucket`` with TCP_NODELAY.

localbucket (http.server underneath) writes a response's headers and body in
separate sends. With Nagle's algorithm on, the body waits for the client's
delayed ACK (~40 ms on Linux), and tansu makes several sequential S3 requests
per Kafka fetch, so every fetch stalled ~200 ms and the projector caught up at
~15k points/s. Turning Nagle off is the standard fix (``StreamRequestHandler``
has a switch for it); see docs/decisions/0004-embedded-broker-durability.md.

    python -m modelog._s3server DATA_ROOT --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import localbucket


def main() -> None:
    localbucket.S3Handler.disable_nagle_algorithm = True
    localbucket.main()


if __name__ == "__main__":
    main()
