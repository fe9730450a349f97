"""``/api/users``: the caller's own profile, and other people's public part of theirs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.auth import Role
from tripline.common.errors import NotFound
from tripline.common.validation import parse_body
from tripline.core.context import Core, core_of
from tripline.core.models import ProfileUpdate, profile_view

# What anyone may see of another user: no phone, no emergency contact.
PUBLIC_FIELDS = ("id", "role", "name")


async def load_profile(core: Core, user_id: str, *, own: bool) -> dict[str, Any] | None:
    """The profile of ``user_id`` through the caches (5 minutes), or None when unknown.

    Someone else's profile may come from a secondary (``own`` False): a little staleness is
    acceptable there, and the primary is spared. It is cached under its own key, so a lagging
    secondary can never answer the owner, who must read their own writes.
    """

    async def from_database() -> dict[str, Any] | None:
        document = await core.users.get(user_id, stale_ok=not own)
        return profile_view(document) if document is not None else None

    key = user_id if own else f"public:{user_id}"
    profile = await core.profiles_cache.get(
        key, from_database, ttl_s=core.settings.profile_cache_ttl_s
    )
    return profile if isinstance(profile, dict) else None


async def me(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    profile = await load_profile(core, identity.user_id, own=True)
    if profile is None:
        # Known from the token alone until the user saves something.
        profile = {"id": identity.user_id, "role": identity.role.value, "name": None}
        profile |= {"phone": None, "emergency_contact": None, "updated_at": None}
    return JSONResponse(profile)


async def update_me(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    update = await parse_body(request, ProfileUpdate)
    changes = update.model_dump(exclude_unset=True, mode="json")
    document = await core.users.update_profile(
        identity.user_id, role=identity.role.value, changes=changes
    )
    # After the write is acknowledged: every replica drops what it holds.
    await core.profiles_cache.invalidate(identity.user_id, f"public:{identity.user_id}")
    return JSONResponse(profile_view(document))


async def someone(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    user_id = request.path_params["user_id"]
    profile = await load_profile(core, user_id, own=user_id == identity.user_id)
    if profile is None:
        raise NotFound(f"no user {user_id}")
    if identity.role is Role.ADMIN or identity.user_id == user_id:
        return JSONResponse(profile)
    return JSONResponse({field: profile.get(field) for field in PUBLIC_FIELDS})


ROUTES = [
    Route("/api/users/me", me, methods=["GET"]),
    Route("/api/users/me", update_me, methods=["PATCH"]),
    Route("/api/users/{user_id}", someone, methods=["GET"]),
]
