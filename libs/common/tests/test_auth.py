from __future__ import annotations

import socket
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from starlette.requests import HTTPConnection, Request

from tripline.common.auth import (
    Identity,
    Role,
    TokenVerifier,
    bearer_token,
    identity_from_claims,
    mint_token,
)
from tripline.common.errors import DependencyUnavailable, Forbidden, Unauthorized
from tripline.common.settings import LOCAL_JWT_SECRET, ServiceSettings
from tripline.devstack.fakes import FakeClock

OTHER_SECRET = "a-different-secret-that-is-also-long-enough-0123"


def hs_settings(**overrides: Any) -> ServiceSettings:
    return ServiceSettings(jwt_algorithm="HS256", **overrides)


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "u-1", "role": "rider", "iat": now, "exp": now + 600}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


async def test_hs256_mint_verify_round_trip() -> None:
    token = mint_token(LOCAL_JWT_SECRET, sub="driver-7", role=Role.DRIVER)
    identity = await TokenVerifier(hs_settings()).verify(token)
    assert identity == Identity("driver-7", Role.DRIVER)


def test_mint_token_sets_iat_and_exp_from_now() -> None:
    token = mint_token(LOCAL_JWT_SECRET, sub="u", role=Role.ADMIN, ttl_s=60, now=1_000_000)
    decoded = jwt.decode(token, options={"verify_signature": False})
    assert decoded == {"sub": "u", "role": "admin", "iat": 1_000_000, "exp": 1_000_060}


async def test_expired_token_is_unauthorized_mentioning_expiry() -> None:
    token = mint_token(LOCAL_JWT_SECRET, sub="u", role=Role.RIDER, ttl_s=60, now=time.time() - 3600)
    with pytest.raises(Unauthorized, match="expired") as caught:
        await TokenVerifier(hs_settings()).verify(token)
    assert caught.value.status == 401


async def test_leeway_accepts_a_token_just_past_expiry() -> None:
    token = mint_token(LOCAL_JWT_SECRET, sub="u", role=Role.RIDER, ttl_s=60, now=time.time() - 70)
    verifier = TokenVerifier(hs_settings(jwt_leeway_s=30))
    assert (await verifier.verify(token)).user_id == "u"
    with pytest.raises(Unauthorized, match="expired"):
        await TokenVerifier(hs_settings(jwt_leeway_s=0)).verify(token)


async def test_wrong_secret_is_unauthorized() -> None:
    token = mint_token(OTHER_SECRET, sub="u", role=Role.RIDER)
    with pytest.raises(Unauthorized, match="not valid"):
        await TokenVerifier(hs_settings()).verify(token)


async def test_configured_secret_is_used() -> None:
    token = mint_token(OTHER_SECRET, sub="u", role=Role.RIDER)
    verifier = TokenVerifier(hs_settings(jwt_secret=SecretStr(OTHER_SECRET)))
    assert (await verifier.verify(token)).user_id == "u"


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "Bearer x"])
async def test_malformed_tokens_are_unauthorized(token: str) -> None:
    with pytest.raises(Unauthorized):
        await TokenVerifier(hs_settings()).verify(token)


async def test_unsigned_alg_none_token_is_rejected() -> None:
    token = jwt.encode(claims(), key=None, algorithm="none")
    with pytest.raises(Unauthorized):
        await TokenVerifier(hs_settings()).verify(token)


@pytest.mark.parametrize("missing", ["sub", "exp"])
async def test_required_claims_must_be_present(missing: str) -> None:
    token = jwt.encode(claims(**{missing: None}), LOCAL_JWT_SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        await TokenVerifier(hs_settings()).verify(token)


@pytest.mark.parametrize("role", [None, "superuser", "RIDER", ""])
async def test_missing_or_unknown_role_is_unauthorized(role: str | None) -> None:
    token = jwt.encode(claims(role=role), LOCAL_JWT_SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="role"):
        await TokenVerifier(hs_settings()).verify(token)


async def test_issuer_and_audience_are_enforced_when_configured() -> None:
    settings = hs_settings(jwt_issuer="https://id.tripline", jwt_audience="api")
    good = jwt.encode(
        claims(iss="https://id.tripline", aud="api"), LOCAL_JWT_SECRET, algorithm="HS256"
    )
    assert (await TokenVerifier(settings).verify(good)).user_id == "u-1"
    for bad in (claims(iss="https://evil", aud="api"), claims(iss="https://id.tripline")):
        token = jwt.encode(bad, LOCAL_JWT_SECRET, algorithm="HS256")
        with pytest.raises(Unauthorized):
            await TokenVerifier(settings).verify(token)


async def test_rs256_with_public_key(rsa_keys: tuple[str, str]) -> None:
    private, public = rsa_keys
    settings = ServiceSettings(jwt_algorithm="RS256", jwt_public_key=public)
    token = jwt.encode(claims(role="admin"), private, algorithm="RS256")
    assert await TokenVerifier(settings).verify(token) == Identity("u-1", Role.ADMIN)


async def test_rs256_rejects_hs256_tokens_and_other_keys(rsa_keys: tuple[str, str]) -> None:
    _, public = rsa_keys
    verifier = TokenVerifier(ServiceSettings(jwt_algorithm="RS256", jwt_public_key=public))
    hs_token = mint_token(LOCAL_JWT_SECRET, sub="u", role=Role.ADMIN)
    with pytest.raises(Unauthorized):
        await verifier.verify(hs_token)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthorized):
        await verifier.verify(jwt.encode(claims(), other, algorithm="RS256"))


def test_rs256_without_key_or_jwks_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="RS256"):
        TokenVerifier(ServiceSettings(jwt_algorithm="RS256"))
    with pytest.raises(ValueError, match="RS256"):
        TokenVerifier(ServiceSettings(jwt_algorithm="RS256", jwt_public_key=""))


def test_identity_from_claims_requires_a_string_subject() -> None:
    assert identity_from_claims({"sub": "u", "role": "driver"}) == Identity("u", Role.DRIVER)
    for bad in ({"role": "driver"}, {"sub": "", "role": "driver"}, {"sub": 5, "role": "rider"}):
        with pytest.raises(Unauthorized, match="subject"):
            identity_from_claims(bad)


def test_identity_require() -> None:
    rider = Identity("u", Role.RIDER)
    rider.require(Role.RIDER)
    rider.require(Role.DRIVER, Role.RIDER)
    with pytest.raises(Forbidden, match="admin") as caught:
        rider.require(Role.ADMIN)
    assert caught.value.status == 403
    with pytest.raises(Forbidden):
        rider.require()


def connection(
    kind: str = "http", *, authorization: str | None = None, query: str = ""
) -> HTTPConnection:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    scope: dict[str, Any] = {
        "type": kind,
        "path": "/",
        "root_path": "",
        "query_string": query.encode(),
        "headers": headers,
    }
    if kind == "http":
        scope["method"] = "GET"
        return Request(scope)
    return HTTPConnection(scope)


@pytest.mark.parametrize("header", ["Bearer abc.def", "bearer abc.def", "BEARER  abc.def "])
def test_bearer_token_from_header(header: str) -> None:
    assert bearer_token(connection(authorization=header)) == "abc.def"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "abc"])
def test_missing_or_other_scheme_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized, match="Bearer"):
        bearer_token(connection(authorization=header))


def test_query_token_is_accepted_on_websockets_only() -> None:
    assert bearer_token(connection("websocket", query="token=ws.tok")) == "ws.tok"
    with pytest.raises(Unauthorized):
        bearer_token(connection("http", query="token=ws.tok"))
    with pytest.raises(Unauthorized):
        bearer_token(connection("websocket", query="token="))


def test_header_wins_over_query_on_websockets() -> None:
    conn = connection("websocket", authorization="Bearer from.header", query="token=from.query")
    assert bearer_token(conn) == "from.header"


async def test_an_unreachable_jwks_endpoint_is_a_dependency_outage() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ServiceSettings(
        jwt_algorithm="RS256", jwt_jwks_url=f"http://127.0.0.1:{port}/.well-known/jwks.json"
    )
    token = jwt.encode({"sub": "u"}, "k" * 32, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(DependencyUnavailable) as caught:
        await TokenVerifier(settings).verify(token)
    assert caught.value.status == 503


class CountingVerifier(TokenVerifier):
    """Counts signature checks; after ``reject_after`` of them every check fails."""

    def __init__(self, *, reject_after: int | None = None, **kwargs: Any) -> None:
        super().__init__(hs_settings(), **kwargs)
        self.decoded = 0
        self.reject_after = reject_after

    async def _decode(self, token: str) -> dict[str, object]:
        self.decoded += 1
        if self.reject_after is not None and self.decoded > self.reject_after:
            raise Unauthorized("the token has expired")
        return await super()._decode(token)


async def test_a_verified_token_is_not_checked_again() -> None:
    verifier = CountingVerifier()
    token = mint_token(LOCAL_JWT_SECRET, sub="r-1", role=Role.RIDER)
    for _ in range(5):
        assert await verifier.verify(token) == Identity("r-1", Role.RIDER)
    assert verifier.decoded == 1


async def test_a_cached_token_is_checked_again_once_past_its_expiry() -> None:
    clock = FakeClock(time.time())
    verifier = CountingVerifier(reject_after=1, clock=clock)
    token = mint_token(LOCAL_JWT_SECRET, sub="r-1", role=Role.RIDER, ttl_s=60, now=clock.now)
    await verifier.verify(token)
    clock.now += 60 + ServiceSettings().jwt_leeway_s - 1
    await verifier.verify(token)
    assert verifier.decoded == 1
    clock.now += 2
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(token)
    assert verifier.decoded == 2


async def test_the_cache_keeps_the_most_recently_used_tokens() -> None:
    verifier = CountingVerifier(cache_size=2)
    first, second, third = (
        mint_token(LOCAL_JWT_SECRET, sub=f"r-{n}", role=Role.RIDER) for n in range(3)
    )
    for token in (first, second, first, third):
        await verifier.verify(token)
    assert verifier.decoded == 3
    await verifier.verify(first)
    assert verifier.decoded == 3
    await verifier.verify(second)
    assert verifier.decoded == 4


async def test_rejected_tokens_are_never_cached() -> None:
    verifier = CountingVerifier()
    token = jwt.encode(claims(role="pilot"), LOCAL_JWT_SECRET, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await verifier.verify(token)
    assert verifier.decoded == 2
