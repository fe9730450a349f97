// The tracking scenario: live trips watched over WebSockets, as the Ingress routes them (straight
// to the tracking replicas; the plan's ws_urls). One VU holds one trip: its driver's socket, which
// sends a location every interval_ms and reads the acks, and watchers_per_trip subscribers (the
// rider, then operators) spread over the replicas. A subscriber counts:
//   tl_delivery_ms  the driver's send to its receive (both ends share the k6 clock);
//   tl_events_lost  every seq it never saw: holes between events, and the tail (the driver's
//                   last acknowledged seq against the last it saw when it closes);
//   tl_reconnects   sockets the server closed unasked: the subscriber comes back with ?since=
//                   and a snapshot that could not replay counts its gap as lost (tl_unrecovered).
// A share of riders (sos_share) raise an SOS during the trip, through the gateway.
// The trips are requested and accepted through the gateway in setup (setupTrips).
import http from 'k6/http';
import exec from 'k6/execution';
import { WebSocket } from 'k6/experimental/websockets';
import { setInterval, clearInterval, setTimeout } from 'k6/timers';
import { call } from './lib/api.js';
import { person } from './lib/auth.js';
import { sleepMs } from './lib/clock.js';
import * as m from './lib/metrics.js';
import { iterationDeadline, params, plan } from './lib/plan.js';
import { chance, near, placeIn } from './lib/random.js';

const P = params('tracking');

// Setup: P.trips trips, each requested by its own rider and accepted by its own driver, through
// the gateway, in parallel batches. Returns [{id, rider, driver, at}] with tokens.
export function setupTrips() {
  if (!P) return [];
  const made = [];
  const batch = 50;
  for (let start = 0; start < P.trips; start += batch) {
    const people = [];
    for (let k = start; k < Math.min(P.trips, start + batch); k++) {
      people.push({
        k,
        rider: person('rider', `tr${k}`, k).token,
        driver: person('driver', `td${k}`, k).token,
        at: placeIn(plan.city),
      });
    }
    const created = http.batch(
      people.map((p) => ({
        method: 'POST',
        url: `${plan.base_url}/api/trips`,
        body: JSON.stringify({ origin: p.at, destination: near(p.at, 2000) }),
        params: { headers: { Authorization: `Bearer ${p.rider}`, 'Content-Type': 'application/json' }, tags: { name: 'setup' } },
      })),
    );
    const accepted = http.batch(
      people.map((p, i) => ({
        method: 'POST',
        url: `${plan.base_url}/api/trips/${created[i].json('id')}/status`,
        body: JSON.stringify({ status: 'accepted' }),
        params: { headers: { Authorization: `Bearer ${p.driver}`, 'Content-Type': 'application/json' }, tags: { name: 'setup' } },
      })),
    );
    people.forEach((p, i) => {
      if (created[i].status !== 201 || accepted[i].status !== 200) {
        throw new Error(`tracking setup: trip ${p.k} answered ${created[i].status}/${accepted[i].status}`);
      }
      made.push({ id: created[i].json('id'), rider: p.rider, driver: p.driver, at: p.at });
    });
  }
  return made;
}

// The token travels in the Authorization header, not in ?token=: a URL ends up in logs (k6's
// own warnings name it), and the run's folder is kept as an artifact.
function wsUrl(i, tripId, since) {
  const base = plan.ws_urls[i % plan.ws_urls.length];
  return `${base}/ws/trips/${tripId}${since === null ? '' : `?since=${since}`}`;
}

// A socket on a trip that reconnects when the server closes it unasked. onFrame(frame) for every
// frame; the snapshot too.
function socket(index, tripId, token, onFrame, lastSeq) {
  const state = { closing: false, ws: null };
  const open = (since) => {
    const ws = new WebSocket(wsUrl(index, tripId, since), null, {
      headers: { Authorization: `Bearer ${token}` },
    });
    state.ws = ws;
    ws.onmessage = (e) => onFrame(JSON.parse(String(e.data)), ws);
    ws.onerror = () => m.frameErrors.add(1, { kind: 'socket' });
    ws.onclose = () => {
      if (state.closing) return;
      m.reconnects.add(1);
      setTimeout(() => {
        if (!state.closing) open(lastSeq());
      }, 1000);
    };
  };
  open(null);
  return {
    send: (text) => state.ws && state.ws.readyState === 1 && state.ws.send(text),
    close: () => {
      state.closing = true;
      if (state.ws) state.ws.close();
    },
  };
}

function watch(index, trip, token, driverAcked) {
  const seen = { last: null, snapshot: false };
  const onFrame = (frame) => {
    if (frame.type === 'snapshot') {
      if (!seen.snapshot) m.subscribed.add(1);
      if (seen.last !== null && frame.recovered === false && frame.seq > seen.last) {
        m.unrecovered.add(1);
        m.lost.add(frame.seq - seen.last);
      }
      seen.snapshot = true;
      if (seen.last === null || frame.seq > seen.last) seen.last = frame.seq;
      return;
    }
    if (typeof frame.seq !== 'number') {
      if (frame.type === 'error') m.frameErrors.add(1, { kind: String(frame.code) });
      return;
    }
    if (frame.type === 'location') {
      m.delivered.add(1);
      m.delivery.add(Date.now() - frame.ts * 1000);
    }
    if (seen.last !== null && frame.seq > seen.last + 1) m.lost.add(frame.seq - seen.last - 1);
    if (seen.last === null || frame.seq > seen.last) seen.last = frame.seq;
  };
  const s = socket(index, trip.id, token, onFrame, () => seen.last);
  return {
    close: () => {
      const tail = driverAcked() - (seen.last === null ? 0 : seen.last);
      m.lost.add(tail > 0 ? tail : 0);
      s.close();
    },
  };
}

export async function tracking(data) {
  const until = iterationDeadline(P, exec.scenario.startTime, P.settle_s + P.hold_s + P.grace_s);
  const holdMs = until - Date.now() - (P.settle_s + P.grace_s) * 1000;
  if (holdMs < 5 * P.interval_ms) {
    await sleepMs(until - Date.now());
    return;
  }
  const trips = data.trips;
  const k = exec.scenario.iterationInTest % trips.length;
  const trip = trips[k];
  let acked = 0;
  let sent = 0;
  const driver = socket(
    k,
    trip.id,
    trip.driver,
    (frame) => {
      if (frame.type === 'ack' && frame.seq > acked) acked = frame.seq;
      if (frame.type === 'error') m.frameErrors.add(1, { kind: String(frame.code) });
    },
    () => acked,
  );
  const watchers = [];
  for (let j = 0; j < P.watchers_per_trip; j++) {
    const token = j === 0 ? trip.rider : person('admin', `ops${k}-${j}`, k * P.watchers_per_trip + j).token;
    watchers.push(watch(k + j, trip, token, () => acked));
  }
  // Watchers settle before the first location, spread over the interval across trips.
  await sleepMs(P.settle_s * 1000 + (k / trips.length) * P.interval_ms);
  let at = trip.at;
  const timer = setInterval(() => {
    sent++;
    at = { lat: at.lat + 0.00005, lng: at.lng };
    driver.send(`{"type":"location","lat":${at.lat.toFixed(6)},"lng":${at.lng.toFixed(6)},"ts":${Date.now() / 1000}}`);
    m.published.add(1);
  }, P.interval_ms);
  // Now and then the rider raises an SOS mid-trip: critical traffic that must pass whatever the
  // load (its event reaches the trip's sockets too, with its own seq).
  if (chance(P.sos_share)) {
    const at = Math.random() * holdMs;
    await sleepMs(at);
    const rider = { token: trip.rider };
    const sos = await call(
      rider,
      'POST',
      '/api/trips/{trip_id}/sos',
      { trip_id: trip.id },
      { lat: trip.at.lat, lng: trip.at.lng, message: 'load test' },
      { idempotencyKey: `${plan.run_id}-sos-${trip.id}-${exec.scenario.iterationInTest}` },
    );
    m.sosOk.add(sos.res.status === 202 ? 1 : 0);
    m.sosMs.add(sos.res.timings.duration);
    await sleepMs(holdMs - at);
  } else {
    await sleepMs(holdMs);
  }
  clearInterval(timer);
  // The last frames have a moment to arrive and be acknowledged before the count is taken.
  await sleepMs(P.grace_s * 1000);
  for (const w of watchers) w.close();
  driver.close();
  await sleepMs(100);
}
