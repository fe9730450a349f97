// The users scenario: signed-in people of a city, several per VU, each in a session of their own
// at every moment (acting or thinking), so that "concurrent users" is VUs x users_per_vu.
//
// Riders (most of them): open the app (profile), now and then edit it, search what is near,
// request a trip, watch it until a driver brings it to the end (or cancel when nobody comes),
// look at the driver's location on the way, pay. Drivers: open the app, search open trips near
// them, accept one (a 409 when another driver was faster is a race people lose, not an error),
// move it through arrived, in_progress and completed, sending a location every second in
// batches while on the trip. A small share of riders on a trip raise an SOS. Think times are
// log-normal around the plan's medians. Each VU's iteration is a window (window_s) in which its
// users run sessions back to back; it starts new people each window.
import exec from 'k6/execution';
import { call } from './lib/api.js';
import { person } from './lib/auth.js';
import { sleepMs } from './lib/clock.js';
import * as m from './lib/metrics.js';
import { iterationDeadline, params, plan } from './lib/plan.js';
import { chance, near, pick, placeIn, thinkMs, uniform } from './lib/random.js';

const OPEN = ['requested'];
const DONE = ['completed', 'cancelled'];

function analytics(who, name) {
  const event = { name, ts: Date.now() / 1000, properties: { screen: name } };
  return call(who, 'POST', '/api/analytics/events', {}, { events: [event] });
}

async function think(p) {
  await sleepMs(thinkMs(p.think_s));
}

async function openApp(who, p) {
  await call(who, 'GET', '/api/users/me');
  await analytics(who, 'app_open');
  if (chance(p.profile_edit_share)) {
    await think(p);
    await call(who, 'PATCH', '/api/users/me', {}, { name: `Load ${who.name}` });
  }
}

async function search(who, at, radiusKm) {
  const query = `lat=${at.lat.toFixed(6)}&lng=${at.lng.toFixed(6)}&radius_km=${radiusKm}`;
  const { json } = await call(who, 'GET', '/api/trips/search', {}, null, { query });
  return json && Array.isArray(json.items) ? json.items : [];
}

async function riderSession(who, p, deadline) {
  await openApp(who, p);
  await think(p);
  const from = placeIn(plan.city);
  await search(who, from, p.search_radius_km);
  await think(p);
  const to = near(from, uniform(1000, 6000));
  const created = await call(
    who,
    'POST',
    '/api/trips',
    {},
    { origin: from, destination: to },
    { idempotencyKey: `${who.name}-${Date.now()}` },
  );
  if (!created.json || !created.json.id) return;
  m.trips.add(1, { step: 'requested' });
  const tripId = created.json.id;
  const askedAt = Date.now();
  let status = 'requested';
  let raisedSos = false;
  while (!DONE.includes(status) && Date.now() < deadline) {
    await sleepMs(thinkMs(p.poll_s));
    const seen = await call(who, 'GET', '/api/trips/{trip_id}', { trip_id: tripId });
    if (seen.json && seen.json.status) status = seen.json.status;
    if (OPEN.includes(status) && Date.now() - askedAt > p.accept_timeout_s * 1000) {
      const cancelled = await call(who, 'POST', '/api/trips/{trip_id}/status', { trip_id: tripId }, {
        status: 'cancelled',
      });
      if (cancelled.outcome === 'ok') status = 'cancelled';
    }
    if (status === 'accepted' || status === 'arrived' || status === 'in_progress') {
      await call(who, 'GET', '/api/tracking/trips/{trip_id}/location', { trip_id: tripId }, null, {
        expected: [404],
      });
    }
    if (status === 'in_progress' && !raisedSos && chance(p.sos_share)) {
      raisedSos = true;
      const sos = await call(
        who,
        'POST',
        '/api/trips/{trip_id}/sos',
        { trip_id: tripId },
        { lat: from.lat, lng: from.lng, message: 'load test' },
        { idempotencyKey: `${who.name}-sos-${tripId}` },
      );
      m.sosOk.add(sos.res.status === 202 ? 1 : 0);
      m.sosMs.add(sos.res.timings.duration);
    }
  }
  if (status === 'completed') {
    await think(p);
    const paid = await call(
      who,
      'POST',
      '/api/trips/{trip_id}/payment',
      { trip_id: tripId },
      { amount_cents: Math.floor(uniform(500, 4000)), currency: 'EUR', method: 'card' },
      { idempotencyKey: `${who.name}-pay-${tripId}` },
    );
    if (paid.outcome === 'ok') m.trips.add(1, { step: 'paid' });
    await analytics(who, 'trip_paid');
  }
}

async function move(who, tripId, to) {
  const res = await call(who, 'POST', '/api/trips/{trip_id}/status', { trip_id: tripId }, {
    status: to,
  });
  return res.outcome === 'ok';
}

// A driver on a trip: a point every second (about 10 m/s, a car in town), sent in batches of
// batch_s points as the SDK sends them.
async function drive(who, tripId, from, p) {
  let at = from;
  const heading = uniform(0, 360);
  const rad = (heading * Math.PI) / 180;
  const until = Date.now() + thinkMs(p.trip_s);
  while (Date.now() < until) {
    const points = [];
    for (let i = 0; i < p.batch_s; i++) {
      at = { lat: at.lat + (10 * Math.cos(rad)) / 111320, lng: at.lng + (10 * Math.sin(rad)) / 68000 };
      points.push({ lat: at.lat, lng: at.lng, ts: Date.now() / 1000, heading, speed: 10 });
      await sleepMs(1000);
    }
    await call(who, 'POST', '/api/tracking/location', {}, { trip_id: tripId, points });
  }
}

async function driverSession(who, p, deadline) {
  await openApp(who, p);
  const spot = placeIn(plan.city);
  const giveUp = Date.now() + p.accept_timeout_s * 1000;
  while (Date.now() < Math.min(giveUp, deadline)) {
    const items = (await search(who, spot, p.search_radius_km)).filter((t) => t.status === 'requested');
    if (items.length > 0) {
      const trip = pick(items.slice(0, 5));
      if (await move(who, trip.id, 'accepted')) {
        m.trips.add(1, { step: 'accepted' });
        await sleepMs(thinkMs(p.pickup_s));
        if (!(await move(who, trip.id, 'arrived'))) return;
        await think(p);
        if (!(await move(who, trip.id, 'in_progress'))) return;
        await drive(who, trip.id, trip.origin || spot, p);
        if (await move(who, trip.id, 'completed')) m.trips.add(1, { step: 'completed' });
        return;
      }
    }
    await think(p);
  }
}

// One of the VU's people: sessions back to back until the window closes.
async function user(index, p, deadline) {
  const vu = exec.vu.idInTest;
  const iteration = exec.vu.iterationInScenario;
  await sleepMs(Math.random() * p.think_s * 1000); // people do not all open the app at once
  let session = 0;
  while (Date.now() < deadline - p.think_s * 1000) {
    const name = `u${vu}-${iteration}-${index}-${session}`;
    const isDriver = index % Math.round(1 / p.driver_share) === 0;
    const who = { ...person(isDriver ? 'driver' : 'rider', name, vu * p.users_per_vu + index), name };
    if (isDriver) await driverSession(who, p, deadline);
    else await riderSession(who, p, deadline);
    session++;
    await think(p);
  }
}

export async function users() {
  const p = params('users');
  const deadline = iterationDeadline(p, exec.scenario.startTime, p.window_s);
  if (deadline - Date.now() < 4 * p.think_s * 1000) {
    // Too little time left for a session: wait out the stages instead of spinning iterations.
    await sleepMs(deadline - Date.now());
    return;
  }
  const people = [];
  for (let i = 0; i < p.users_per_vu; i++) people.push(user(i, p, deadline));
  await Promise.all(people);
}
