"""Small helpers the integration tests share: tokens, unique names, polling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.devstack.harness import scaled

T = TypeVar("T")


def auth(user_id: str, role: Role) -> dict[str, str]:
    """The ``Authorization`` header of a local token for ``user_id`` in ``role``."""
    return {"Authorization": f"Bearer {mint_token(LOCAL_JWT_SECRET, sub=user_id, role=role)}"}


def fresh(prefix: str) -> str:
    """A name no other test uses (users, trips, databases)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 20) -> T:
    """Poll ``probe`` until it returns something other than None and return that; fails the
    test after ``timeout_s`` (scaled for slow machines)."""
    deadline = asyncio.get_running_loop().time() + scaled(timeout_s)
    while True:
        value = await probe()
        if value is not None:
            return value
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{probe} never held")
        await asyncio.sleep(0.1)
