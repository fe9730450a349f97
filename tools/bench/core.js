// k6 load for `make bench-core` (tools/bench/core.sh): profile reads and trip searches
// through the gateway, against keys the cache already holds (hot) or has never seen (cold),
// plus the two seeding passes that create those keys. One MODE per k6 run:
//
//   seed-users       PATCH /api/users/me as bench-u-0 .. bench-u-(HOT_USERS+COLD_USERS-1)
//   seed-trips       POST /api/trips: open trips on a regular grid (see tripGrid())
//   profile-cached   GET /api/users/bench-u-<random < HOT_USERS>         constant VUs, DURATION
//   profile-uncached GET /api/users/bench-u-<HOT_USERS + n>, n unique    until DURATION or out of keys
//   search-cached    GET /api/trips/search at random points of ONE grid cell   constant VUs, DURATION
//   search-uncached  GET /api/trips/search at the centre of cell n, n unique    until DURATION or out of keys
//
// Why unique keys for "uncached" (and not tiny TTLs): core's cache coalesces concurrent misses
// of one key into one database read, so a small key set with a 1 ms TTL would still spare the
// database most reads while the hit ratio read 0 %. A key nobody asked for before is a real
// cold read: Redis MGET, MongoDB, Redis store, the same code path and the same answer size as
// the cached run. The cold runs therefore stop early when their keys run out; the rate is
// still requests per second of the time they ran, and core.sh says when that happened.
//
// Tokens: HS256 with JWT_SECRET and the claims tripline.common.auth.mint_token signs (sub,
// role, iat, exp), signed here once per user and cached, not per request.
//
// Env: MODE, BASE_URL (the gateway), JWT_SECRET, VUS (20), DURATION (15s), HOT_USERS (10),
// COLD_USERS, COLD_CELLS, SUMMARY_JSON (where handleSummary writes the figures core.sh reads).
import http from 'k6/http';
import exec from 'k6/execution';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { Counter, Trend } from 'k6/metrics';

const MODE = __ENV.MODE || '';
const BASE_URL = __ENV.BASE_URL || '';
const JWT_SECRET = __ENV.JWT_SECRET || '';
const VUS = Number(__ENV.VUS || 20);
const DURATION = __ENV.DURATION || '15s';
const HOT_USERS = Number(__ENV.HOT_USERS || 10);
const COLD_USERS = Number(__ENV.COLD_USERS || 0);
const COLD_CELLS = Number(__ENV.COLD_CELLS || 0);

// --- geometry (trip_routes.SEARCH_GRID_DEGREES = 0.01: one cached answer per 0.01° cell) ----
const GRID = 0.01;
const RADIUS_KM = 5;
// Cold searches walk a square of SIDE x SIDE cells starting at ORIGIN; the hot search sits in
// the middle of it, so both see the same trip density.
const ORIGIN = { lat: 52.0, lng: 13.0 };
const SIDE = Math.max(1, Math.ceil(Math.sqrt(COLD_CELLS + 1))); // + the hot cell
// Trips every 0.02° lat x 0.03° lng (about 2.2 km x 2.1 km at 52° N): about 17 of them within
// 5 km of any search point, under the default page size of 20, so every search returns a
// similar, non-empty page. The grid reaches past the search square by more than the radius.
const TRIP_STEP = { lat: 0.02, lng: 0.03 };
const MARGIN = { lat: 0.06, lng: 0.09 };

function tripGrid() {
  const points = [];
  const span = SIDE * GRID;
  for (let lat = ORIGIN.lat - MARGIN.lat; lat <= ORIGIN.lat + span + MARGIN.lat; lat += TRIP_STEP.lat) {
    for (let lng = ORIGIN.lng - MARGIN.lng; lng <= ORIGIN.lng + span + MARGIN.lng; lng += TRIP_STEP.lng) {
      points.push({ lat: Number(lat.toFixed(5)), lng: Number(lng.toFixed(5)) });
    }
  }
  return points;
}

function cellCentre(n) {
  const row = Math.floor(n / SIDE);
  const col = n % SIDE;
  return { lat: ORIGIN.lat + (row + 0.5) * GRID, lng: ORIGIN.lng + (col + 0.5) * GRID };
}

// The hot cell: the middle of the cold square. Points vary inside it to show that nearby
// searches share one cached answer (the cache key is the snapped point).
const HOT_CELL = Math.floor(SIDE / 2) * SIDE + Math.floor(SIDE / 2);

// The n-th cold cell: every cell of the square but the hot one, which is cached by then.
function coldCell(n) {
  return cellCentre(n < HOT_CELL ? n : n + 1);
}

// --- tokens -----------------------------------------------------------------------------
function b64url(text) {
  return encoding.b64encode(text, 'rawurl');
}

const tokenCache = {};
function token(sub, role) {
  const key = `${role}:${sub}`;
  if (!tokenCache[key]) {
    const now = Math.floor(Date.now() / 1000);
    const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const body = b64url(JSON.stringify({ sub, role, iat: now, exp: now + 3600 }));
    const sig = crypto.hmac('sha256', JWT_SECRET, `${head}.${body}`, 'base64rawurl');
    tokenCache[key] = `${head}.${body}.${sig}`;
  }
  return tokenCache[key];
}

function auth(sub, role, extra) {
  return {
    headers: Object.assign({ Authorization: `Bearer ${token(sub, role)}` }, extra || {}),
    // One name per run instead of the URL: unique ids and points would otherwise make one
    // metric series per request (k6 warns past 100,000 and slows down).
    tags: { name: MODE },
  };
}

// --- scenarios --------------------------------------------------------------------------
const KEYED = {
  'seed-users': HOT_USERS + COLD_USERS,
  'seed-trips': MODE === 'seed-trips' ? tripGrid().length : 0,
  'profile-uncached': COLD_USERS,
  'search-uncached': COLD_CELLS,
};

function scenario() {
  if (MODE in KEYED) {
    // Each key once: a shared counter hands every iteration its own key.
    return {
      executor: 'shared-iterations',
      vus: Math.min(VUS, Math.max(1, KEYED[MODE])),
      iterations: Math.max(1, KEYED[MODE]),
      maxDuration: MODE.startsWith('seed') ? '30m' : DURATION,
      gracefulStop: '5s',
    };
  }
  return { executor: 'constant-vus', vus: VUS, duration: DURATION, gracefulStop: '5s' };
}

export const options = {
  scenarios: { [MODE || 'none']: scenario() },
  // Bodies are not parsed (k6 shares the CPU with the stack); sizes come from Content-Length.
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

const ok = new Counter('status_2xx');
const s429 = new Counter('status_429');
const s503 = new Counter('status_503');
const s4xx = new Counter('status_4xx_other');
const s5xx = new Counter('status_5xx_other');
const neterr = new Counter('status_none'); // connection refused, reset, k6 timeout
const bytes = new Trend('body_bytes');

function count(res) {
  const s = res.status;
  if (s >= 200 && s < 300) ok.add(1);
  else if (s === 429) s429.add(1);
  else if (s === 503) s503.add(1);
  else if (s >= 400 && s < 500) s4xx.add(1);
  else if (s >= 500) s5xx.add(1);
  else neterr.add(1);
  const length = res.headers['Content-Length'];
  if (length !== undefined) bytes.add(Number(length));
  // A few failures in the console say more than a count: the problem type and who answered.
  if ((s < 200 || s >= 300) && exec.scenario.iterationInTest < 1000 && Math.random() < 0.01) {
    console.warn(`${MODE}: ${res.request.method} ${res.request.url} -> ${s} ${res.error || ''} ` +
      `${res.headers['Content-Type'] || ''} ${res.headers['Tripline-Instance'] || ''}`);
  }
}

export function setup() {
  if (!BASE_URL || !JWT_SECRET) throw new Error('BASE_URL and JWT_SECRET are required');
  if (!(MODE in KEYED) && !['profile-cached', 'search-cached'].includes(MODE)) {
    throw new Error(`unknown MODE ${MODE}`);
  }
}

function searchUrl(p) {
  return `${BASE_URL}/api/trips/search?lat=${p.lat.toFixed(5)}&lng=${p.lng.toFixed(5)}&radius_km=${RADIUS_KM}`;
}

// Readers: one identity per VU, so the per-user rate limit (raised anyway) and the token
// caches see the same small population in every run.
function reader(role) {
  return `bench-${role}-${exec.vu.idInTest}`;
}

let trips = null;

export default function () {
  const n = exec.scenario.iterationInTest;
  let res;
  switch (MODE) {
    case 'seed-users': {
      const sub = `bench-u-${n}`;
      res = http.patch(`${BASE_URL}/api/users/me`, JSON.stringify({ name: `Bench User ${n}` }),
        auth(sub, 'rider', { 'Content-Type': 'application/json' }));
      break;
    }
    case 'seed-trips': {
      trips = trips || tripGrid();
      const o = trips[n];
      const body = { origin: o, destination: { lat: o.lat + 0.01, lng: o.lng + 0.01 } };
      res = http.post(`${BASE_URL}/api/trips`, JSON.stringify(body),
        auth(`bench-seed-rider-${n % 100}`, 'rider', { 'Content-Type': 'application/json' }));
      break;
    }
    case 'profile-cached':
      res = http.get(`${BASE_URL}/api/users/bench-u-${Math.floor(Math.random() * HOT_USERS)}`,
        auth(reader('rider'), 'rider'));
      break;
    case 'profile-uncached':
      res = http.get(`${BASE_URL}/api/users/bench-u-${HOT_USERS + n}`, auth(reader('rider'), 'rider'));
      break;
    case 'search-cached': {
      const c = cellCentre(HOT_CELL);
      const p = { lat: c.lat + (Math.random() - 0.5) * GRID * 0.9, lng: c.lng + (Math.random() - 0.5) * GRID * 0.9 };
      res = http.get(searchUrl(p), auth(reader('driver'), 'driver'));
      break;
    }
    case 'search-uncached':
      res = http.get(searchUrl(coldCell(n)), auth(reader('driver'), 'driver'));
      break;
    default:
      throw new Error(`unknown MODE ${MODE}`);
  }
  count(res);
}

function val(data, metric, key) {
  const m = data.metrics[metric];
  return m && m.values && m.values[key] !== undefined ? m.values[key] : 0;
}

export function handleSummary(data) {
  const figures = {
    mode: MODE,
    seconds: data.state.testRunDurationMs / 1000,
    requests: val(data, 'http_reqs', 'count'),
    rps: val(data, 'http_reqs', 'rate'),
    p50_ms: val(data, 'http_req_duration', 'med'),
    p99_ms: val(data, 'http_req_duration', 'p(99)'),
    ok: val(data, 'status_2xx', 'count'),
    s429: val(data, 'status_429', 'count'),
    s503: val(data, 'status_503', 'count'),
    s4xx: val(data, 'status_4xx_other', 'count'),
    s5xx: val(data, 'status_5xx_other', 'count'),
    none: val(data, 'status_none', 'count'),
    body_bytes_med: val(data, 'body_bytes', 'med'),
    keys: KEYED[MODE] || null,
    iterations: val(data, 'iterations', 'count'),
  };
  const line = `${MODE}: ${figures.requests} requests in ${figures.seconds.toFixed(1)} s, ` +
    `${figures.rps.toFixed(1)} rps, p50 ${figures.p50_ms.toFixed(2)} ms, p99 ${figures.p99_ms.toFixed(2)} ms, ` +
    `2xx ${figures.ok}\n`;
  const out = { stdout: line };
  if (__ENV.SUMMARY_JSON) out[__ENV.SUMMARY_JSON] = JSON.stringify(figures);
  return out;
}
