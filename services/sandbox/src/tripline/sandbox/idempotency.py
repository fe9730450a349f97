"""Idempotency keys: the same key and request give back the first answer instead of a new one."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from tripline.common.errors import Conflict, ValidationFailed

Record = TypeVar("Record")

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(Conflict):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused for a different request"


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """Return the request's ``Idempotency-Key``, or ``None`` when it sends none.

    Raises :class:`ValidationFailed` for a blank key or one longer than :data:`MAX_KEY_LENGTH`.
    """
    key = headers.get(IDEMPOTENCY_HEADER.lower())
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(
            f"the {IDEMPOTENCY_HEADER} header must be 1 to {MAX_KEY_LENGTH} characters",
            errors=[
                {
                    "loc": f"header.{IDEMPOTENCY_HEADER}",
                    "msg": f"must be 1 to {MAX_KEY_LENGTH} characters",
                    "type": "string_length",
                }
            ],
        )
    return key


class Replays(Generic[Record]):
    """The record each idempotency key produced, for the most recent ``capacity`` keys.

    A request is identified by its fingerprint (its validated body as a mapping); a key seen
    with another fingerprint is a client bug, not a retry.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[Mapping[str, Any], Record]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def recall(self, key: str, fingerprint: Mapping[str, Any]) -> Record | None:
        """Return the record first produced under ``key``, or ``None`` for a new key.

        Raises :class:`IdempotencyKeyReused` when ``key`` came with a different request.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        first_fingerprint, record = entry
        if first_fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                f"the {IDEMPOTENCY_HEADER} was already used with a different request body"
            )
        return record

    def remember(self, key: str, fingerprint: Mapping[str, Any], record: Record) -> None:
        """Store what ``key`` produced, forgetting the oldest key beyond capacity."""
        self._entries[key] = (dict(fingerprint), record)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
