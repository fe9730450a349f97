"""Keeps the worker alive when the broker (Redis) goes away, around a bug of kombu 5.7's Redis
transport.

When the connection to Redis breaks, Celery closes the connection and reconnects. Closing it
closes the transport first (``Connection._do_close_transport`` sets ``transport.client`` to
None) and then, through another path, a channel of that transport again; the channel wants to
put its unacknowledged messages back, builds a client from ``transport.client`` and fails with
``AttributeError: 'NoneType' object has no attribute 'hostname'``. That error is not one Celery
expects from a broker, so it is "unrecoverable" and the worker process exits: a Redis restart
took the workers down with it (the chaos suite's ``redis-kill``).

:func:`survive_broker_loss` makes that one case raise a Redis ``ConnectionError`` instead, which
Celery treats as the broker being away: it keeps reconnecting until Redis is back. The messages
that channel held unacknowledged stay in Redis's ``unacked`` set and come back when the
visibility timeout passes, as after any worker crash; nothing is lost.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

_original_connparams = kombu_redis.Channel._connparams  # type: ignore[attr-defined]


def _connparams(self: Any, asynchronous: bool = False) -> Any:
    if self.connection.client is None:
        raise RedisConnectionError("the broker connection is closed; reconnecting")
    return _original_connparams(self, asynchronous=asynchronous)


def survive_broker_loss() -> None:
    """Install the fix above; calling it again changes nothing."""
    kombu_redis.Channel._connparams = _connparams  # type: ignore[attr-defined]
