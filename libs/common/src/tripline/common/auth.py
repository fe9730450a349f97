"""JWT verification and local minting.

Locally tokens are HS256 with ``JWT_SECRET``; in production RS256 with ``JWT_PUBLIC_KEY`` (PEM)
or ``JWT_JWKS_URL``. Claims: ``sub`` (user id), ``role`` (rider, driver or admin), ``exp``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt
from starlette.requests import HTTPConnection

from tripline.common.errors import DependencyUnavailable, Forbidden, Unauthorized
from tripline.common.settings import ServiceSettings

JWKS_TIMEOUT_S = 2


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
    """Verifies bearer tokens according to the settings; safe to share across requests."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
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
        return identity_from_claims(claims)


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
