"""Readiness probes for the processes the stack starts: each returns True once ready."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tripline.common.celery_app import create_celery
from tripline.common.settings import ServiceSettings

Probe = Callable[[], bool]


def redis_ping(port: int, host: str = "127.0.0.1") -> Probe:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    return probe


def mongo_ping(url: str) -> Probe:
    def probe() -> bool:
        client: MongoClient[dict[str, object]] = MongoClient(
            url, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
        )
        try:
            client.admin.command("ping")
        except PyMongoError:
            return False
        finally:
            client.close()
        return True

    return probe


def http_ok(url: str) -> Probe:
    """Ready when ``url`` answers 2xx."""
    return _http_probe(url, any_status=False)


def http_answers(url: str) -> Probe:
    """Ready when ``url`` answers at all (any status)."""
    return _http_probe(url, any_status=True)


def _http_probe(url: str, *, any_status: bool) -> Probe:
    # One client per probe: building one per call loads TLS settings each time, which adds up
    # to seconds of CPU while a dozen processes start on two cores.
    client = httpx.Client(timeout=1.5, verify=False)  # noqa: S501 (loopback, plain HTTP)

    def probe() -> bool:
        try:
            response = client.get(url)
        except httpx.HTTPError:
            return False
        return any_status or response.is_success

    return probe


def celery_worker(redis_url: str, node: str) -> Probe:
    """Ready when the worker node answers a broadcast ping through the broker."""
    app = create_celery(ServiceSettings(redis_url=redis_url))

    def probe() -> bool:
        try:
            replies = app.control.ping(destination=[node], timeout=1.0) or []
        except OSError:
            return False
        return any(node in reply for reply in replies)

    return probe
