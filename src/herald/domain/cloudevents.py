"""CloudEvents 1.0 (structured JSON mode): the message body Herald puts on SQS and STOMP queues.

Pure: no I/O, so the same bytes come out for every retry of a job and consumers can deduplicate
on ``id`` (the job id).
"""

from __future__ import annotations

import orjson

from herald.domain.ids import rfc3339
from herald.domain.messages import OutboundMessage

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


def cloudevent(message: OutboundMessage, source: str = "herald") -> bytes:
    """The CloudEvent for one job: ``id`` is the job id (stable across retries), ``type`` the key.

    ``source`` is a URI-reference naming this Herald deployment (``https://herald.example.com``);
    the store and integration are appended, so ``source`` + ``id`` is unique as the spec asks.
    """
    return orjson.dumps(
        {
            "specversion": SPECVERSION,
            "id": message.job_id,
            "source": f"{source.rstrip('/')}/stores/{message.store_id}"
            f"/integrations/{message.integration_id}",
            "type": message.triggered_by,
            "time": rfc3339(message.event_created_at),
            "datacontenttype": "application/json",
            "data": message.payload,
            "integrationid": message.integration_id,
            "storeid": message.store_id,
        }
    )
