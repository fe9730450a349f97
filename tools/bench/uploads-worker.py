"""Helpers of `make bench-uploads` (tools/bench/uploads.sh).

    uploads-worker.py jpeg PATH
        writes a small (about 2 KB) JPEG the worker accepts: 160x120, quality 50
    uploads-worker.py drain GATEWAY REDIS_PORT JWT_SECRET JPEG COUNT OUT_JSON [TIMEOUT_S]
        presigns and uploads COUNT documents (not timed), completes them all as fast as the
        gateway takes them, then samples the queue every second until the worker has finished
        every one: ZCARD documents:queue (waiting, the positions drivers see), LLEN documents
        (Celery messages not yet taken by a worker) and the finishes recorded since the first
        completion (documents:done). Prints the depth over time; writes the figures to OUT_JSON.

documents/s = COUNT / (last finish - first completion): queueing, S3 reads, inspection, MongoDB
writes and the notification, as the worker does them; the completions themselves take well
under a second for COUNT=200 and overlap the drain (the worker starts on the first at once).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw
from redis.asyncio import Redis

QUEUE_KEY = "documents:queue"
DONE_KEY = "documents:done"
CELERY_LIST = "documents"
DRIVERS = 10
CONCURRENCY = 16


def make_jpeg(path: str) -> None:
    # 160x120 (the worker rejects images under 100 px a side): a card-like drawing that
    # compresses to about 2 KB, where noise would need a smaller, rejected image.
    image = Image.new("RGB", (160, 120), (235, 235, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 50, 110), fill=(120, 140, 170))
    for y in range(30, 110, 16):
        draw.line((60, y, 150, y), fill=(90, 90, 90))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=50)
    Path(path).write_bytes(out.getvalue())


def token(secret: str, sub: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": sub, "role": "driver", "iat": now, "exp": now + 3600}
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


async def bounded(jobs: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: Any) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


async def prepare(client: httpx.AsyncClient, auth: dict[str, str], data: bytes, n: int) -> str:
    body = {
        "doc_type": "license",
        "filename": f"drain-{n}.jpg",
        "content_type": "image/jpeg",
        "size_bytes": len(data),
    }
    res = await client.post("/api/uploads", json=body, headers=auth)
    res.raise_for_status()
    answer = res.json()
    files = {"file": (f"drain-{n}.jpg", data, "image/jpeg")}
    up = await client.post(answer["url"], data=answer["fields"], files=files)
    up.raise_for_status()
    return str(answer["upload_id"])


async def drain(argv: list[str]) -> int:
    gateway, redis_port, secret, jpeg, count_s, out_path = argv[:6]
    timeout_s = float(argv[6]) if len(argv) > 6 else 600.0
    count = int(count_s)
    data = Path(jpeg).read_bytes()
    auths = [
        {"Authorization": f"Bearer {token(secret, f'bench-drain-{d}')}"} for d in range(DRIVERS)
    ]
    redis = Redis(host="127.0.0.1", port=int(redis_port))
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=gateway, timeout=30, limits=limits) as client:
        ids = await bounded([prepare(client, auths[n % DRIVERS], data, n) for n in range(count)])
        owner = {upload_id: auths[n % DRIVERS] for n, upload_id in enumerate(ids)}
        before = await redis.zcard(DONE_KEY)
        if await redis.zcard(QUEUE_KEY) or await redis.llen(CELERY_LIST):
            print("note: the queue was not empty before the completions", file=sys.stderr)
        t0 = time.time()

        async def complete(upload_id: str) -> int:
            res = await client.post(f"/api/uploads/{upload_id}/complete", headers=owner[upload_id])
            return res.status_code

        completing = asyncio.ensure_future(bounded([complete(i) for i in ids]))
        samples: list[dict[str, float]] = []
        last_done_at = t0
        finished = 0
        print(f"{'t_s':>6}{'queue':>7}{'celery':>8}{'done':>6}")
        while True:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.zcard(QUEUE_KEY)
                pipe.llen(CELERY_LIST)
                pipe.zcount(DONE_KEY, t0 - 1, "+inf")
                queue, celery, done = await pipe.execute()
            now = time.time()
            if done > finished:
                finished = done
                newest = await redis.zrange(DONE_KEY, -1, -1, withscores=True)
                last_done_at = float(newest[0][1]) if newest else now
            sample = {"t": now - t0, "queue": queue, "celery": celery, "done": done}
            samples.append(sample)
            print(f"{sample['t']:>6.1f}{queue:>7}{celery:>8}{done:>6}", flush=True)
            if completing.done() and done >= count and not queue and not celery:
                break
            if now - t0 > timeout_s:
                print(f"gave up after {timeout_s:.0f} s", file=sys.stderr)
                break
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - now)))
        statuses_http = await completing
        verdicts: dict[str, int] = {}
        for upload_id in ids:
            res = await client.get(f"/api/uploads/{upload_id}", headers=owner[upload_id])
            status = res.json().get("status", str(res.status_code)) if res.is_success else "http"
            verdicts[status] = verdicts.get(status, 0) + 1
    finished_total = await redis.zcard(DONE_KEY) - before
    await redis.aclose()
    span = max(1e-9, last_done_at - t0)
    figures = {
        "count": count,
        "complete_ok": sum(1 for s in statuses_http if s == 202),
        "complete_statuses": sorted({str(s) for s in statuses_http}),
        "finished": int(finished_total),
        "seconds": span,
        "docs_per_s": min(finished, count) / span,
        "max_queue": max(s["queue"] for s in samples),
        "verdicts": verdicts,
        "sampled_for_s": samples[-1]["t"],
        "samples": samples,
    }
    Path(out_path).write_text(json.dumps(figures))
    return 0


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "jpeg":
        make_jpeg(sys.argv[2])
        return 0
    if len(sys.argv) >= 8 and sys.argv[1] == "drain":
        return asyncio.run(drain(sys.argv[2:]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
