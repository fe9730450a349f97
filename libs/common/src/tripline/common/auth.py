"""JWT verification and local minting.

Locally tokens are HS256 with ``JWT_SECRET``; in production RS256 with ``JWT_PUBLIC_KEY`` (PEM)
or ``JWT_JWKS_URL``. Claims: ``sub`` (user id), ``role`` (rider, driver or admin), ``exp``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import jwt
from starlette.requests import HTTPConnection

from tripline.common.errors import DependencyUnavailable, Forbidden, Unauthorized
from tripline.common.settings import ServiceSettings

JWKS_TIMEOUT_S = 2
DEFAULT_CACHE_SIZE = 10_000


class Role(StrEnum):
    RIDER = "rider"
    DRIVER = "driver"
    ADMIN = "admin"


@dataclass(frozen=True)
class Identity:
    user_id: str
    role: Role

    def require(self, *roles: Role) -> None:
        """Raise :class:`Forbidden` unless this identity has one of ``roles``."""
        if self.role not in roles:
            allowed = ", ".join(role.value for role in roles)
            raise Forbidden(f"this action needs the role {allowed}")


class TokenVerifier:
    """Verifies bearer tokens according to the settings; safe to share across requests.

    A verified token is remembered (up to ``cache_size`` of them, least recently used first
    out) until its ``exp`` plus the leeway, so a client's every request costs a dictionary
    look-up instead of a signature check. The price: a token stays accepted until it expires
    even if its signing key is withdrawn meanwhile, as it would be by any service that checks
    signatures offline.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._cache: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._algorithm = settings.jwt_algorithm
        self._jwks: jwt.PyJWKClient | None = None
        self._key: str | None = None
        if self._algorithm == "HS256":
            self._key = settings.jwt_secret.get_secret_value()
        elif settings.jwt_public_key:
            self._key = settings.jwt_public_key
        elif settings.jwt_jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.jwt_jwks_url, cache_keys=True, lifespan=300, timeout=JWKS_TIMEOUT_S
            )
        else:
            raise ValueError("RS256 needs JWT_PUBLIC_KEY or JWT_JWKS_URL")

    async def verify(self, token: str) -> Identity:
        """Return the identity in ``token``.

        Raises :class:`Unauthorized` for a missing, malformed, expired or badly signed token,
        and :class:`DependencyUnavailable` when the JWKS endpoint cannot be reached (an outage
        of the identity provider is not the client's fault).
        """
        cached = self._cache.get(token)
        if cached is not None:
            identity, valid_until = cached
            if self._clock() < valid_until:
                self._cache.move_to_end(token)
                return identity
            del self._cache[token]
        claims = await self._decode(token)
        identity = identity_from_claims(claims)
        expires = claims.get("exp")
        if self._cache_size > 0 and isinstance(expires, int | float):
            self._cache[token] = (identity, float(expires) + self._settings.jwt_leeway_s)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return identity

    async def _decode(self, token: str) -> dict[str, object]:
        try:
            if self._jwks is not None:
                # PyJWKClient fetches over blocking urllib; keep it off the event loop.
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key: object = signing_key.key
            else:
                key = self._key
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=[self._algorithm],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_s,
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise DependencyUnavailable("jwks", "the signing keys cannot be fetched") from exc
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired") from exc
        except jwt.PyJWKClientError as exc:
            raise Unauthorized("the token's signing key could not be found") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from exc
        return claims


def identity_from_claims(claims: dict[str, object]) -> Identity:
    """Build an :class:`Identity`; raises :class:`Unauthorized` for a missing or unknown role."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the token has no subject")
    try:
        role = Role(str(claims.get("role")))
    except ValueError as exc:
        raise Unauthorized("the token's role must be rider, driver or admin") from exc
    return Identity(subject, role)


def bearer_token(connection: HTTPConnection) -> str:
    """Return the bearer token of a request, or ``?token=`` on a WebSocket.

    Raises :class:`Unauthorized` when there is none.
    """
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if connection.scope["type"] == "websocket":
        query_token = connection.query_params.get("token")
        if query_token:
            return query_token
    raise Unauthorized("send an Authorization: Bearer <token> header")


def mint_token(
    secret: str, *, sub: str, role: Role, ttl_s: int = 3600, now: float | None = None
) -> str:
    """Mint an HS256 token for local use (``make token``)."""
    issued = int(time.time() if now is None else now)
    claims = {"sub": sub, "role": role.value, "iat": issued, "exp": issued + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")
