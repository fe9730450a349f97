"""The HTTP surface: the two provider APIs and the control API that steers them.

Every provider call (including ``GET /v1/payments/{id}``) goes through the provider's
behaviour, as a real outage would hit it too. ``GET /v1/notifications`` and ``GET /v1/payments``
are inspection aids for tests (what was sent, what was charged), not part of a provider's API,
so they answer whatever the mode.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tripline.common.validation import parse_body, parse_query
from tripline.sandbox.behaviour import ModeChange
from tripline.sandbox.idempotency import REPLAYED_HEADER, idempotency_key
from tripline.sandbox.notifications import NotificationQuery, NotificationRequest
from tripline.sandbox.payments import PaymentQuery, PaymentRequest
from tripline.sandbox.state import SandboxState, provider_named


def sandbox_state(request: Request) -> SandboxState:
    """The state the app's lifespan created."""
    state: SandboxState = request.app.state.sandbox
    return state


def replay_headers(replayed: bool) -> dict[str, str]:
    return {REPLAYED_HEADER: "true"} if replayed else {}


async def create_payment(request: Request) -> Response:
    sandbox = sandbox_state(request)
    key = idempotency_key(request.headers)
    order = await parse_body(request, PaymentRequest)
    async with sandbox.payments.call():
        payment, replayed = sandbox.ledger.confirm(order, key)
    return JSONResponse(payment.as_dict(), headers=replay_headers(replayed))


async def list_payments(request: Request) -> Response:
    query = parse_query(request.query_params, PaymentQuery)
    items = sandbox_state(request).ledger.charges(query.reference)
    return JSONResponse({"items": [item.as_dict() for item in items]})


async def get_payment(request: Request) -> Response:
    sandbox = sandbox_state(request)
    async with sandbox.payments.call():
        payment = sandbox.ledger.get(request.path_params["payment_id"])
    return JSONResponse(payment.as_dict())


async def create_notification(request: Request) -> Response:
    sandbox = sandbox_state(request)
    key = idempotency_key(request.headers)
    message = await parse_body(request, NotificationRequest)
    async with sandbox.notifications.call():
        notification, replayed = sandbox.outbox.accept(message, key)
    return JSONResponse(
        {"id": notification.id, "status": notification.status},
        status_code=202,
        headers=replay_headers(replayed),
    )


async def list_notifications(request: Request) -> Response:
    query = parse_query(request.query_params, NotificationQuery)
    items = sandbox_state(request).outbox.sent(query.to)
    return JSONResponse({"items": [item.as_dict() for item in items]})


async def control_state(request: Request) -> Response:
    return JSONResponse(sandbox_state(request).snapshot(), headers={"Cache-Control": "no-store"})


async def configure_provider(request: Request) -> Response:
    provider = provider_named(request.path_params["provider"])
    change = await parse_body(request, ModeChange)
    behaviour = sandbox_state(request).behaviours[provider]
    behaviour.configure(change.mode, change.delay_s, change.fail_ratio)
    return JSONResponse(behaviour.snapshot())


async def reset(request: Request) -> Response:
    sandbox = sandbox_state(request)
    sandbox.reset()
    return JSONResponse(sandbox.snapshot())


def routes() -> list[BaseRoute]:
    """The sandbox's own routes, for :func:`tripline.common.app.service_app`."""
    return [
        Route("/v1/payments", create_payment, methods=["POST"]),
        Route("/v1/payments", list_payments, methods=["GET"]),
        Route("/v1/payments/{payment_id}", get_payment, methods=["GET"]),
        Route("/v1/notifications", create_notification, methods=["POST"]),
        Route("/v1/notifications", list_notifications, methods=["GET"]),
        Route("/control", control_state, methods=["GET"]),
        Route("/control/reset", reset, methods=["POST"]),
        Route("/control/{provider}", configure_provider, methods=["PUT"]),
    ]
