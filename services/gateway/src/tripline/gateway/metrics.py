"""The gateway's own Prometheus metrics, beside the request metrics every service exports."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tripline.common.breaker import BREAKER_STATE_VALUES, BreakerState
from tripline.common.ratelimit import Decision, Source, Tier
from tripline.gateway.activetrips import Outcome
from tripline.gateway.concurrency import AdaptiveLimit
from tripline.gateway.shedding import Priority, Rank
from tripline.gateway.upstreamload import Cause

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GatewayMetrics:
    """Admission by priority, rate-limit decisions, shedding (the gateway's own and per
    upstream), breakers and retries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.admission = Counter(
            "gateway_admission",
            "Requests admitted or shed by the load shedder, per priority.",
            ["priority", "outcome"],
            registry=registry,
        )
        self.rate_limit = Counter(
            "gateway_rate_limit_decisions",
            "Rate-limit decisions per tier, outcome and where they were made "
            "(redis, local while Redis is away, fail-open for critical traffic).",
            ["tier", "outcome", "source"],
            registry=registry,
        )
        self.rate_limit_degraded = Gauge(
            "gateway_rate_limit_degraded",
            "1 while rate limits are decided in this process because Redis is away.",
            registry=registry,
        )
        self.shedding_level = Gauge(
            "gateway_shedding_level",
            "0 admits everything, 1 sheds low priority, 2 sheds low and normal.",
            registry=registry,
        )
        self.loop_lag = Histogram(
            "gateway_event_loop_lag_seconds",
            "How late the event loop ran a timer: the wait every ready request shares.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Circuit breaker per upstream replica: 0 closed, 1 half-open, 2 open.",
            ["upstream"],
            registry=registry,
        )
        self.open_sockets = Gauge(
            "gateway_open_sockets",
            "WebSockets this replica relays now (each also holds one to tracking).",
            registry=registry,
        )
        self.retries = Counter(
            "gateway_upstream_retries",
            "Attempts repeated after a timeout or dropped connection, per upstream.",
            ["upstream"],
            registry=registry,
        )
        self.upstream_in_flight = Gauge(
            "gateway_upstream_in_flight",
            "Requests forwarded to each upstream and not yet answered, every priority counted.",
            ["upstream"],
            registry=registry,
        )
        self.upstream_limit = Gauge(
            "gateway_upstream_limit",
            "Adaptive concurrency limit per upstream: browsing requests are refused at this "
            "many in flight, low ones at a share of it, trip parties' above it; scaled down by "
            "the share of replicas whose breaker is open.",
            ["upstream"],
            registry=registry,
        )
        self.upstream_queue_delay = Gauge(
            "gateway_upstream_queue_delay_seconds",
            "Median queueing delay per upstream (latency over the route's fastest) of the "
            "limit's last decided interval.",
            ["upstream"],
            registry=registry,
        )
        self.upstream_shed = Counter(
            "gateway_upstream_shed",
            "Requests shed per upstream, rank (low, browsing, in_trip) and cause (loop: the "
            "gateway's own lag; limit: the upstream's concurrency limit; breaker: every "
            "replica's breaker open).",
            ["upstream", "rank", "cause"],
            registry=registry,
        )
        self.active_trip_lookups = Counter(
            "gateway_active_trip_lookups",
            "Look-ups of a sender's trip state in Redis (cache misses) by outcome: active, "
            "inactive, failed (ranked as browsing).",
            ["outcome"],
            registry=registry,
        )
        # Children bound once: a labels() look-up per request is measurable on the hot path.
        self._admitted = {p: self.admission.labels(p.value, "admitted") for p in Priority}
        self._shed = {p: self.admission.labels(p.value, "shed") for p in Priority}
        self._decisions: dict[tuple[Tier, bool, Source], Counter] = {}
        self._upstream_shed: dict[tuple[str, Rank, Cause], Counter] = {}

    def admitted(self, priority: Priority) -> None:
        self._admitted[priority].inc()

    def shed(self, priority: Priority) -> None:
        self._shed[priority].inc()

    def watch_upstream(self, upstream: str, limit: AdaptiveLimit) -> None:
        """Report ``limit``'s state under ``upstream``; read at scrape time, not per request."""
        self.upstream_in_flight.labels(upstream).set_function(lambda: limit.in_flight)
        self.upstream_limit.labels(upstream).set_function(lambda: limit.limit)
        self.upstream_queue_delay.labels(upstream).set_function(lambda: limit.queue_delay_s)

    def shed_at(self, upstream: str, rank: Rank, cause: Cause) -> None:
        """Count one request of ``rank`` to ``upstream`` shed for ``cause``."""
        key = (upstream, rank, cause)
        child = self._upstream_shed.get(key)
        if child is None:
            child = self.upstream_shed.labels(upstream, rank.label, cause)
            self._upstream_shed[key] = child
        child.inc()

    def looked_up(self, outcome: Outcome) -> None:
        self.active_trip_lookups.labels(outcome).inc()

    def decided(self, tier: Tier, decision: Decision) -> None:
        key = (tier, decision.allowed, decision.source)
        child = self._decisions.get(key)
        if child is None:
            outcome = "allowed" if decision.allowed else "refused"
            child = self.rate_limit.labels(tier.value, outcome, decision.source.value)
            self._decisions[key] = child
        child.inc()

    def degraded(self, degraded: bool) -> None:
        self.rate_limit_degraded.set(1 if degraded else 0)

    def retried(self, upstream: str) -> None:
        self.retries.labels(upstream).inc()

    def breaker_changed(self, name: str, _old: BreakerState, new: BreakerState) -> None:
        self.breaker_state.labels(name).set(BREAKER_STATE_VALUES[new])
