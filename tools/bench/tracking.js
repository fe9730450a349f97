// k6 tracking fan-out over Tripline's WebSocket contract (JSON text frames), the port of the
// owners' ../shared/bench/fanout.js (Socket.io) with the same method, timeline and figures:
//
// N subscribers are split across two tracking replicas (even index -> URL_A, odd -> URL_B) and
// watch trip k = floor(i / 10) (ten watchers per trip, five on each replica), each with its own
// admin token (sub bench-admin-<i>). One driver per trip, connected to URL_A like the
// reference's publishers, sends {"type":"location","lat","lng","ts"} on its own socket every
// INTERVAL_MS, ts = the k6 clock in epoch seconds (ms resolution); subscribers record
// now - ts in `fanout_latency`, exactly as the reference does with its ms timestamp.
//
// Timeline (as fanout.js): subscribers connect spread over RAMP_S, drivers start at
// RAMP_S + SETTLE_S and publish for PUBLISH_S (then close 1 s later), subscribers close
// GRACE_S after the end of publishing.
//
// Delivered vs expected: `published` counts frames the drivers sent (as the reference counts
// emits); expected = published * 10. The server numbers each trip's events (seq), so the
// where-did-it-go counters use the server's seq: missed_head (between the snapshot's seq and
// the first event), missed_gaps (holes), missed_tail (driver's last acked seq vs the last seq
// each watcher saw). Differences from the reference, by contract: a driver's socket is also a
// watcher of its trip (it receives its own locations back, counted apart in driver_echo, not
// in delivered), and every location frame is answered with an ack (or an error frame).
//
// Env: URL_A, URL_B, PUB_URL (default URL_A), TRIPS_FILE (JSON [{"id","driver"}], one per
// trip, from tracking-trips.py), JWT_SECRET, N (1000), SUBS_PER_VU (10), RAMP_S (5),
// SETTLE_S (3), PUBLISH_S (30), GRACE_S (3), INTERVAL_MS (1000), SUMMARY_JSON.
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Trend } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import exec from 'k6/execution';

const URL_A = __ENV.URL_A || 'ws://127.0.0.1:8083';
const URL_B = __ENV.URL_B || 'ws://127.0.0.1:8085';
const PUB_URL = __ENV.PUB_URL || URL_A;
const JWT_SECRET = __ENV.JWT_SECRET || 'tripline-local-development-secret-change-me';
const N = Number(__ENV.N || 1000);
const SUBS_PER_VU = Number(__ENV.SUBS_PER_VU || 10);
const TRIPS = Math.ceil(N / 10);
const RAMP_S = Number(__ENV.RAMP_S || 5);
const SETTLE_S = Number(__ENV.SETTLE_S || 3);
const PUBLISH_S = Number(__ENV.PUBLISH_S || 30);
const GRACE_S = Number(__ENV.GRACE_S || 3);
const INTERVAL_MS = Number(__ENV.INTERVAL_MS || 1000);
const SUB_VUS = Math.ceil(N / SUBS_PER_VU);
const PUB_START_S = RAMP_S + SETTLE_S;
const SUB_HOLD_MS = (PUB_START_S + PUBLISH_S + GRACE_S) * 1000;

const trips = new SharedArray('trips', () => {
  const list = JSON.parse(open(__ENV.TRIPS_FILE));
  if (list.length < TRIPS) throw new Error(`TRIPS_FILE has ${list.length} trips, N=${N} needs ${TRIPS}`);
  return list;
});

const latency = new Trend('fanout_latency', true);
const delivered = new Counter('fanout_delivered');
const published = new Counter('fanout_published');
const acked = new Counter('tl_acked'); // {"type":"ack"} answers to the drivers' frames
const driverErrors = new Counter('tl_driver_error_frames'); // error frames sent to drivers
const subErrors = new Counter('tl_subscriber_error_frames');
const driverEcho = new Counter('tl_driver_echo'); // a driver's own locations sent back to it
const connected = new Counter('sio_connected'); // got the snapshot frame
const wsErrors = new Counter('sio_ws_errors');
const earlyClose = new Counter('sio_closed_early'); // closed by the server / network
const close1013 = new Counter('tl_closed_1013'); // "try again later" (slow consumer, lost stream)
const close1012 = new Counter('tl_closed_1012'); // replica draining
const missedHead = new Counter('dbg_missed_head');
const missedGaps = new Counter('dbg_missed_gaps');
const lastSeqSum = new Counter('dbg_last_seq_sum'); // sum over subscribers of last seq seen
const pubFinalX10 = new Counter('dbg_pub_final_seq_x10'); // sum over drivers of 10 * last acked seq
const headSeqSum = new Counter('dbg_snapshot_seq_x1'); // sum over subscribers of snapshot seq

export const options = {
  scenarios: {
    subscribers: {
      executor: 'per-vu-iterations',
      exec: 'subscriber',
      vus: SUB_VUS,
      iterations: 1,
      maxDuration: `${Math.ceil(SUB_HOLD_MS / 1000) + RAMP_S + 30}s`,
      gracefulStop: '10s',
    },
    publishers: {
      executor: 'per-vu-iterations',
      exec: 'publisher',
      vus: TRIPS,
      iterations: 1,
      startTime: `${PUB_START_S}s`,
      maxDuration: `${PUBLISH_S + 30}s`,
      gracefulStop: '10s',
    },
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  thresholds: {
    'sio_connected{role:subscriber}': ['count>=0'],
    'sio_connected{role:publisher}': ['count>=0'],
    'sio_closed_early{role:subscriber}': ['count>=0'],
    'sio_closed_early{role:publisher}': ['count>=0'],
  },
};

function b64url(text) {
  return encoding.b64encode(text, 'rawurl');
}

function token(sub, role) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, role, iat: now, exp: now + 3600 }));
  return `${head}.${body}.${crypto.hmac('sha256', JWT_SECRET, `${head}.${body}`, 'base64rawurl')}`;
}

// Opens one trip socket. onReady(ws, snapshot) runs on the snapshot frame; onFrame(frame) for
// every later frame.
function tripConnect(base, tripId, jwt, onReady, onFrame, isPublisher) {
  const role = isPublisher ? 'publisher' : 'subscriber';
  const ws = new WebSocket(`${base}/ws/trips/${tripId}?token=${jwt}`);
  let closing = false;
  let ready = false;
  ws.onmessage = (e) => {
    const frame = JSON.parse(typeof e.data === 'string' ? e.data : String(e.data));
    if (!ready && frame.type === 'snapshot') {
      ready = true;
      connected.add(1, { role });
      onReady(ws, frame);
    } else {
      onFrame(frame);
    }
  };
  ws.onerror = (e) => {
    wsErrors.add(1, { kind: 'ws', role });
    // the reason, for the stderr digest (tracking.sh prints the most frequent lines)
    console.warn(`ws error (${role}, ready=${ready}): ${e && e.error}`);
  };
  ws.onclose = (e) => {
    if (closing) return;
    earlyClose.add(1, { role });
    const code = e && e.code;
    if (code === 1013) close1013.add(1);
    else if (code === 1012) close1012.add(1);
  };
  return {
    ws,
    close() {
      closing = true;
      ws.close();
    },
  };
}

export function subscriber() {
  const vu = exec.scenario.iterationInTest;
  const startedAt = Date.now();
  for (let j = 0; j < SUBS_PER_VU; j++) {
    const i = vu * SUBS_PER_VU + j;
    if (i >= N) break;
    const base = i % 2 === 0 ? URL_A : URL_B;
    const trip = trips[Math.floor(i / 10)];
    const delay = Math.floor((i / N) * RAMP_S * 1000);
    setTimeout(() => {
      let lastSeq = 0;
      let first = true;
      let snapSeq = 0;
      const c = tripConnect(
        base,
        trip.id,
        token(`bench-admin-${i}`, 'admin'),
        (_ws, snap) => {
          snapSeq = snap.seq || 0;
          lastSeq = snapSeq;
          headSeqSum.add(snapSeq);
        },
        (f) => {
          if (f.type === 'location') {
            latency.add(Date.now() - f.ts * 1000);
            delivered.add(1);
            if (first && f.seq > snapSeq + 1) missedHead.add(f.seq - snapSeq - 1);
            else if (!first && f.seq > lastSeq + 1) missedGaps.add(f.seq - lastSeq - 1);
            first = false;
            lastSeq = f.seq;
          } else if (f.type === 'error') {
            subErrors.add(1, { code: String(f.code) });
          }
        },
        false,
      );
      setTimeout(() => {
        lastSeqSum.add(lastSeq);
        c.close();
      }, Math.max(0, SUB_HOLD_MS - (Date.now() - startedAt)));
    }, delay);
  }
}

export function publisher() {
  const k = exec.scenario.iterationInTest; // 0..TRIPS-1
  const trip = trips[k];
  const startedAt = Date.now();
  let sent = 0;
  let lastAck = 0;
  let timer = null;
  const lat0 = 52.4 + (k % 100) * 0.002;
  const lng0 = 13.3 + Math.floor(k / 100) * 0.002;
  const c = tripConnect(
    PUB_URL,
    trip.id,
    token(trip.driver, 'driver'),
    (ws) => {
      // spread drivers uniformly over the interval
      setTimeout(() => {
        const fire = () => {
          sent++;
          // ~5.5 m per second northwards: a plausible driver, never flagged as a jump
          ws.send(
            `{"type":"location","lat":${(lat0 + sent * 0.00005).toFixed(6)},"lng":${lng0.toFixed(6)},` +
              `"ts":${Date.now() / 1000}}`,
          );
          published.add(1);
        };
        fire();
        timer = setInterval(fire, INTERVAL_MS);
      }, Math.floor((k / TRIPS) * INTERVAL_MS));
    },
    (f) => {
      if (f.type === 'ack') {
        acked.add(1);
        if (f.seq > lastAck) lastAck = f.seq;
      } else if (f.type === 'location') {
        driverEcho.add(1);
      } else if (f.type === 'error') {
        driverErrors.add(1, { code: String(f.code) });
      }
    },
    true,
  );
  setTimeout(() => {
    if (timer !== null) clearInterval(timer);
    // the last ack has 1 s to come back before the socket closes (the reference waits 1 s too)
    setTimeout(() => {
      pubFinalX10.add(lastAck * 10);
      c.close();
    }, 1000);
  }, PUBLISH_S * 1000 - (Date.now() - startedAt));
}

export function handleSummary(data) {
  const m = (name, key) =>
    data.metrics[name] && data.metrics[name].values[key] !== undefined
      ? data.metrics[name].values[key]
      : 0;
  const pub = m('fanout_published', 'count');
  const del = m('fanout_delivered', 'count');
  const res = {
    subscribers: N,
    trips: TRIPS,
    publish_s: PUBLISH_S,
    subs_connected: m('sio_connected{role:subscriber}', 'count'),
    pubs_connected: m('sio_connected{role:publisher}', 'count'),
    published: pub,
    acked: m('tl_acked', 'count'),
    driver_error_frames: m('tl_driver_error_frames', 'count'),
    subscriber_error_frames: m('tl_subscriber_error_frames', 'count'),
    driver_echo: m('tl_driver_echo', 'count'),
    delivered: del,
    expected_delivered: pub * 10,
    delivery_ratio: pub ? Number((del / (pub * 10)).toFixed(4)) : 0,
    delivered_per_s: Number((del / PUBLISH_S).toFixed(1)),
    lat_p50_ms: m('fanout_latency', 'med'),
    lat_p95_ms: m('fanout_latency', 'p(95)'),
    lat_p99_ms: m('fanout_latency', 'p(99)'),
    lat_max_ms: m('fanout_latency', 'max'),
    ws_errors: m('sio_ws_errors', 'count'),
    closed_early_subs: m('sio_closed_early{role:subscriber}', 'count'),
    closed_early_pubs: m('sio_closed_early{role:publisher}', 'count'),
    closed_1013: m('tl_closed_1013', 'count'),
    closed_1012: m('tl_closed_1012', 'count'),
    missed_head: m('dbg_missed_head', 'count'),
    missed_gaps: m('dbg_missed_gaps', 'count'),
    missed_tail: m('dbg_pub_final_seq_x10', 'count') - m('dbg_last_seq_sum', 'count'),
    ws_connecting_p99_ms: Number(m('ws_connecting', 'p(99)').toFixed(2)),
  };
  const out = { stdout: JSON.stringify(res) + '\n' };
  if (__ENV.SUMMARY_JSON) out[__ENV.SUMMARY_JSON] = JSON.stringify(data, null, 1);
  return out;
}
