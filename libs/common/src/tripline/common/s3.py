"""The S3 client (boto3) and the few calls every service needs, run off the event loop.

boto3 is synchronous; each call goes through :func:`asyncio.to_thread` so a slow S3 never blocks
the loop. Client errors are translated into :class:`S3Unavailable` here, at the boundary. The
bucket of :func:`open_bucket` has a guard (:mod:`tripline.common.guard`): once S3 did not answer
a request-path call, such calls are refused at once until a background ``HeadBucket`` succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tripline.common.errors import DependencyUnavailable
from tripline.common.guard import DependencyGuard, guarding
from tripline.common.settings import ServiceSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

MISSING_BUCKET_CODES = {"404", "NoSuchBucket", "NotFound"}


class S3Unavailable(DependencyUnavailable):
    def __init__(self, detail: str) -> None:
        super().__init__("s3", detail)


def create_s3(settings: ServiceSettings) -> S3Client:
    """Create a client with short timeouts and standard-mode retries."""
    secret = settings.s3_secret_access_key
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(
            connect_timeout=2,
            read_timeout=settings.s3_read_timeout_s,
            retries={"mode": "standard", "max_attempts": settings.s3_max_attempts},
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=50,
        ),
    )
    return client


class Bucket:
    """One bucket and the async operations the services use on it."""

    def __init__(
        self,
        client: S3Client,
        name: str,
        *,
        create_if_missing: bool = False,
        guard: DependencyGuard | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self._create_if_missing = create_if_missing
        self.guard = guard

    async def ensure(self) -> None:
        """Check the bucket answers; create it when missing and allowed (local stand-in).

        Raises :class:`S3Unavailable` when S3 does not answer or the bucket is missing.
        """
        try:
            await asyncio.to_thread(self.client.head_bucket, Bucket=self.name)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in MISSING_BUCKET_CODES and self._create_if_missing:
                await self._create()
                return
            raise S3Unavailable(f"bucket {self.name}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise S3Unavailable(str(exc)) from exc

    async def _create(self) -> None:
        try:
            await asyncio.to_thread(self.client.create_bucket, Bucket=self.name)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise S3Unavailable(f"cannot create bucket {self.name}: {code}") from exc
        except BotoCoreError as exc:
            raise S3Unavailable(str(exc)) from exc

    async def presigned_post(
        self,
        key: str,
        *,
        content_type: str,
        max_bytes: int,
        expires_s: int = 3600,
    ) -> dict[str, Any]:
        """Return ``{"url", "fields"}`` for a browser-style POST of exactly one object.

        The policy pins the key, the content type and a 1..max_bytes length range; S3 enforces
        them, and the caller must still check the object it later finds.
        """
        conditions: list[Any] = [
            {"Content-Type": content_type},
            ["content-length-range", 1, max_bytes],
        ]
        try:
            # Off the loop although signing is about 100 µs of CPU (measured): without static
            # keys boto3 fetches and refreshes credentials over the network when it signs.
            post: dict[str, Any] = await asyncio.to_thread(
                self.client.generate_presigned_post,
                Bucket=self.name,
                Key=key,
                Fields={"Content-Type": content_type},
                Conditions=conditions,
                ExpiresIn=expires_s,
            )
        except (BotoCoreError, ClientError) as exc:
            raise S3Unavailable(str(exc)) from exc
        return post

    async def head(self, key: str) -> dict[str, Any] | None:
        """Return the object's metadata, or ``None`` when there is no such object.

        Raises :class:`S3Unavailable` when S3 does not answer, at once while the guard is open.
        """
        if self.guard is None:
            return await self._head(key)
        with self.guard.call():
            return await self._head(key)

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.name, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise S3Unavailable(f"head {key}: {code}") from exc
        except BotoCoreError as exc:
            raise S3Unavailable(str(exc)) from exc
        return dict(head)


@asynccontextmanager
async def open_bucket(settings: ServiceSettings) -> AsyncIterator[Bucket]:
    """The configured bucket on a fresh client, guarded, closed on exit; no I/O on entry."""
    client = create_s3(settings)
    bucket = Bucket(client, settings.s3_bucket, create_if_missing=settings.s3_create_bucket)
    bucket.guard = DependencyGuard(
        "s3",
        probe=bucket.ensure,
        is_outage=lambda exc: isinstance(exc, S3Unavailable),
        refusal=lambda: S3Unavailable("S3 is not answering; probed in the background"),
        probe_interval_s=settings.dependency_probe_interval_s,
        probe_timeout_s=settings.dependency_probe_timeout_s,
    )
    try:
        async with guarding(bucket.guard):
            yield bucket
    finally:
        client.close()


class BucketProbe:
    """Readiness probe: the bucket answers (and exists, creating it locally when allowed)."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket

    async def __call__(self) -> None:
        await self._bucket.ensure()
