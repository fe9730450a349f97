"""``POST /api/analytics/events``: batches of app events, kept in a capped Redis stream.

Low priority end to end: the gateway sheds it first, and here it costs one round trip. The
stream is the buffer a consumer drains into long-term storage; it keeps the newest
``ANALYTICS_STREAM_MAX`` events.
"""

from __future__ import annotations

import json

from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.errors import DependencyUnavailable
from tripline.common.validation import parse_body
from tripline.core.context import core_of
from tripline.core.models import AnalyticsBatch

STREAM = "analytics:events"


async def record_events(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    batch = await parse_body(request, AnalyticsBatch)
    try:
        async with core.redis.pipeline(transaction=False) as pipe:
            for event in batch.events:
                fields: dict[FieldT, EncodableT] = {
                    "user_id": identity.user_id,
                    "name": event.name,
                    "ts": repr(event.ts),
                    "properties": json.dumps(event.properties, separators=(",", ":")),
                }
                pipe.xadd(STREAM, fields, maxlen=core.settings.analytics_stream_max)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        raise DependencyUnavailable("redis", "events cannot be recorded right now") from exc
    return JSONResponse({"accepted": len(batch.events)}, status_code=202)


ROUTES = [Route("/api/analytics/events", record_events, methods=["POST"])]
