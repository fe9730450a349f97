"""``/api/users``: the caller's own profile, and other people's public part of theirs.

Reads come from the caches, else MongoDB, else (MongoDB away) the last known copy, marked
stale. An update that MongoDB cannot take is queued (:mod:`tripline.core.pending_writes`) and
answered 202 ``pending``.
"""

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
from tripline.core.pending_writes import Queued, Write, new_write_id
from tripline.core.reads import Read, read_through

PROFILE_WRITE = "profile"

# What anyone may see of another user: no phone, no emergency contact.
PUBLIC_FIELDS = ("id", "role", "name")


async def load_profile(core: Core, user_id: str, *, own: bool) -> Read:
    """The profile of ``user_id`` through the caches (5 minutes); its value is None when unknown.

    Someone else's profile may come from a secondary (``own`` False): a little staleness is
    acceptable there, and the primary is spared. It is cached under its own key, so a lagging
    secondary can never answer the owner, who must read their own writes.
    """

    async def from_database() -> dict[str, Any] | None:
        document = await core.users.get(user_id, stale_ok=not own)
        return profile_view(document) if document is not None else None

    key = user_id if own else f"public:{user_id}"
    return await read_through(
        core.profiles_cache,
        core.stale,
        key,
        from_database,
        ttl_s=core.settings.profile_cache_ttl_s,
    )


async def save_profile(
    core: Core, user_id: str, *, role: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply ``changes`` to the profile and make every replica forget the old one; returns
    the profile as saved. Raises :class:`DependencyUnavailable` when MongoDB does not answer."""
    document = await core.users.update_profile(user_id, role=role, changes=changes)
    profile = profile_view(document)
    # After the write is acknowledged: every replica drops what it holds.
    await core.profiles_cache.invalidate(user_id, f"public:{user_id}")
    for key in (user_id, f"public:{user_id}"):
        await core.stale.keep(core.profiles_cache.namespace, key, profile)
    return profile


async def apply_profile_write(core: Core, write: Write) -> None:
    """Replay a queued profile update (see :mod:`tripline.core.pending_writes`)."""
    user_id = write.record.removeprefix("user:")
    await save_profile(
        core, user_id, role=write.payload["role"], changes=dict(write.payload["changes"])
    )


async def me(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    read = await load_profile(core, identity.user_id, own=True)
    profile = read.value
    if not isinstance(profile, dict):
        # Known from the token alone until the user saves something.
        profile = {"id": identity.user_id, "role": identity.role.value, "name": None}
        profile |= {"phone": None, "emergency_contact": None, "updated_at": None}
    return JSONResponse(profile, headers=read.headers())


async def update_me(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    update = await parse_body(request, ProfileUpdate)
    changes = update.model_dump(exclude_unset=True, mode="json")
    role = identity.role.value
    write = Write(
        kind=PROFILE_WRITE,
        record=f"user:{identity.user_id}",
        write_id=new_write_id(identity.user_id, request.headers.get("idempotency-key")),
        payload={"role": role, "changes": changes},
    )
    saved = await core.writes.run_or_queue(
        write, lambda: save_profile(core, identity.user_id, role=role, changes=changes)
    )
    if isinstance(saved, Queued):
        return JSONResponse(saved.body(), status_code=202)
    return JSONResponse(saved)


async def someone(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    user_id = request.path_params["user_id"]
    read = await load_profile(core, user_id, own=user_id == identity.user_id)
    profile = read.value
    if not isinstance(profile, dict):
        raise NotFound(f"no user {user_id}")
    if identity.role is not Role.ADMIN and identity.user_id != user_id:
        profile = {field: profile.get(field) for field in PUBLIC_FIELDS}
    return JSONResponse(profile, headers=read.headers())


ROUTES = [
    Route("/api/users/me", me, methods=["GET"]),
    Route("/api/users/me", update_me, methods=["PATCH"]),
    Route("/api/users/{user_id}", someone, methods=["GET"]),
]
