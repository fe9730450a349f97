// The run's own metrics. Their names are what tests/load/sla.yaml and the runner read; every
// request through the gateway is also tagged with its route class and priority, so
// http_req_duration{class:read} is the latency of the read class as clients see it.
import { Counter, Rate, Trend } from 'k6/metrics';

// One per answered (or failed) request: outcome ok | limited (429) | shed (503 overloaded) |
// conflict (409, a race people lose: two drivers, one trip) | error; tags priority, outcome.
export const responses = new Counter('tl_responses');
// Every request by status code (0: no answer), tag status.
export const statuses = new Counter('tl_status');
// 1 for an error outcome, 0 otherwise: the error-rate SLA.
export const errors = new Rate('tl_errors');
// 5xx answers other than shedding's 503: none is acceptable.
export const unexpected5xx = new Counter('tl_unexpected_5xx');
// SOS raised: 1 when the first attempt was accepted (202), 0 otherwise.
export const sosOk = new Rate('tl_sos_ok');
// SOS raised: the first attempt's latency, ms (the critical class mixes it with tracking).
export const sosMs = new Trend('tl_sos_ms', true);
// Trips requested, accepted by a driver, completed, paid.
export const trips = new Counter('tl_trips');
// Driver's send to a subscriber's receive, ms (same k6 clock on both ends).
export const delivery = new Trend('tl_delivery_ms', true);
export const delivered = new Counter('tl_delivered');
export const published = new Counter('tl_published');
// Events a subscriber never saw (holes in seq, head and tail); reconnects of sockets that closed
// without being asked; snapshots after a reconnect that could not replay what was missed.
export const lost = new Counter('tl_events_lost');
export const reconnects = new Counter('tl_reconnects');
export const unrecovered = new Counter('tl_unrecovered');
export const subscribed = new Counter('tl_subscribed');
export const frameErrors = new Counter('tl_frame_errors');
// Presign to verdict, ms; uploads started and finished by verdict (tag verdict).
export const verdictTime = new Trend('tl_upload_verdict_ms', true);
export const uploads = new Counter('tl_uploads');
