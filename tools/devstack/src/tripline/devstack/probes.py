"""Readiness probes for the processes the stack starts: each returns True once ready.

A probe never raises: whatever goes wrong while a server is still starting (refused
connections, a broker that blinks) means "not ready yet", and the caller's timeout decides.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
from pymongo import MongoClient

from tripline.common.celery_app import create_celery
from tripline.common.settings import ServiceSettings

Probe = Callable[[], bool]


def never_raises(probe: Probe) -> Probe:
    def guarded() -> bool:
        try:
            return probe()
        except Exception:  # noqa: BLE001 (see the module docstring)
            return False

    return guarded


def redis_ping(port: int, host: str = "127.0.0.1") -> Probe:
    def probe() -> bool:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    return never_raises(probe)


def mongo_ping(url: str) -> Probe:
    def probe() -> bool:
        client: MongoClient[dict[str, object]] = MongoClient(
            url, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()
        return True

    return never_raises(probe)


def http_ok(url: str) -> Probe:
    """Ready when ``url`` answers 2xx."""
    return _http_probe(url, any_status=False)


def http_answers(url: str) -> Probe:
    """Ready when ``url`` answers at all (any status)."""
    return _http_probe(url, any_status=True)


def _http_probe(url: str, *, any_status: bool) -> Probe:
    # Plain HTTP on loopback, one connection per call: no TLS context to build (that costs
    # seconds of CPU when a dozen probes poll while the stack starts on two cores) and nothing
    # left open between calls.
    def probe() -> bool:
        transport = httpx.HTTPTransport(verify=False)
        with httpx.Client(transport=transport, timeout=1.5) as client:
            response = client.get(url)
        return any_status or response.is_success

    return never_raises(probe)


def celery_worker(redis_url: str, node: str) -> Probe:
    """Ready when the worker node answers a broadcast ping through the broker."""
    app = create_celery(ServiceSettings(redis_url=redis_url))

    def probe() -> bool:
        replies = app.control.ping(destination=[node], timeout=1.0) or []
        return any(node in reply for reply in replies)

    return never_raises(probe)
