// k6 load for `make bench-uploads` (tools/bench/uploads.sh): the two API calls of a driver's
// document upload, through the gateway, measured apart. One MODE per k6 run:
//
//   presign   POST /api/uploads (a fresh upload each time)            constant VUs, DURATION
//   prep      POST /api/uploads with Idempotency-Key bench-<RUN>-<n>, then the presigned POST of
//             a small JPEG (FILE) straight to S3 (moto): n = 0 .. KEYS-1, each once.  Not timed.
//   complete  POST /api/uploads/<id of upload n>/complete, n = 0 .. KEYS-1, each once
//             until DURATION or out of keys
//
// Why "complete" needs its own prepared uploads: only the first completion of an upload does
// the work (the S3 HEAD, the compare-and-set in MongoDB, the queue script in Redis, the Celery
// message); a second one answers from the record. So every measured call completes an upload
// nobody completed before, whose object is already in S3. The prep run puts them there, and
// the S3 upload (moto, a Python server on these same two cores) stays out of both figures.
//
// The complete run finds its upload ids without any state passed between k6 runs: presigning
// with an Idempotency-Key gives the id sha256("upload\0<driver>\0<key>")[:32] (the upload
// service's upload_id_for); prep checks every id it gets back against that, and counts a
// mismatch as a failure, so a change there stops the bench instead of measuring 404s.
//
// Tokens: HS256 with JWT_SECRET (sub, role=driver, iat, exp), signed once per driver.
//
// Env: MODE, BASE_URL (the gateway), JWT_SECRET, VUS (20), DURATION (15s), KEYS (prep and
// complete), RUN (a tag that makes this run's keys new), DRIVERS (50: drivers the keys are
// spread over), FILE (the JPEG for prep), SUMMARY_JSON (where handleSummary writes figures).
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
const KEYS = Number(__ENV.KEYS || 0);
const RUN = __ENV.RUN || 'run';
const DRIVERS = Number(__ENV.DRIVERS || 50);
const FILE = MODE === 'prep' ? open(__ENV.FILE, 'b') : null;
const FILE_BYTES = FILE ? FILE.byteLength : 2048;

const KEYED = { prep: KEYS, complete: KEYS };

function scenario() {
  if (MODE in KEYED) {
    // Each key once: a shared counter hands every iteration its own upload.
    return {
      executor: 'shared-iterations',
      vus: Math.min(VUS, Math.max(1, KEYS)),
      iterations: Math.max(1, KEYS),
      maxDuration: MODE === 'prep' ? '30m' : DURATION,
      gracefulStop: '5s',
    };
  }
  return { executor: 'constant-vus', vus: VUS, duration: DURATION, gracefulStop: '5s' };
}

export const options = {
  scenarios: { [MODE || 'none']: scenario() },
  // Bodies are not parsed unless needed (k6 shares the CPU with the stack).
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

const ok = new Counter('status_2xx');
const s422 = new Counter('status_422');
const s429 = new Counter('status_429');
const s503 = new Counter('status_503');
const s4xx = new Counter('status_4xx_other');
const s5xx = new Counter('status_5xx_other');
const neterr = new Counter('status_none'); // connection refused, reset, k6 timeout
const idMismatch = new Counter('id_mismatch');
const s3Failed = new Counter('s3_upload_failed');
// The gateway calls alone (prep also talks to S3, which http_req_duration would mix in).
const api = new Trend('api_duration', true);

function b64url(text) {
  return encoding.b64encode(text, 'rawurl');
}

const tokenCache = {};
function token(sub) {
  if (!tokenCache[sub]) {
    const now = Math.floor(Date.now() / 1000);
    const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const body = b64url(JSON.stringify({ sub, role: 'driver', iat: now, exp: now + 3600 }));
    const sig = crypto.hmac('sha256', JWT_SECRET, `${head}.${body}`, 'base64rawurl');
    tokenCache[sub] = `${head}.${body}.${sig}`;
  }
  return tokenCache[sub];
}

function params(sub, extra, responseType) {
  const p = {
    headers: Object.assign({ Authorization: `Bearer ${token(sub)}` }, extra || {}),
    // One name per run instead of the URL: unique ids would make one series per request.
    tags: { name: MODE },
  };
  if (responseType) p.responseType = responseType;
  return p;
}

function count(res, expected) {
  const s = res.status;
  api.add(res.timings.duration);
  if (s === expected) ok.add(1);
  else if (s === 422) s422.add(1);
  else if (s === 429) s429.add(1);
  else if (s === 503) s503.add(1);
  else if (s >= 400 && s < 500) s4xx.add(1);
  else if (s >= 500) s5xx.add(1);
  else neterr.add(1);
  // A few failures in the console say more than a count.
  if (s !== expected && exec.scenario.iterationInTest < 2000 && Math.random() < 0.02) {
    console.warn(`${MODE}: ${res.request.method} ${res.request.url} -> ${s} ${res.error || ''} ` +
      `${String(res.body || '').slice(0, 200)}`);
  }
  return s === expected;
}

// Upload n: its driver, Idempotency-Key and (derived) upload id.
function keyed(n) {
  const driver = `bench-up-${n % DRIVERS}`;
  const key = `bench-${RUN}-${n}`;
  const id = crypto.sha256(`upload\u0000${driver}\u0000${key}`, 'hex').slice(0, 32);
  return { driver, key, id };
}

const JSON_TYPE = { 'Content-Type': 'application/json' };

function presignBody(n) {
  return JSON.stringify({
    doc_type: 'license',
    filename: `bench-${n}.jpg`,
    content_type: 'image/jpeg',
    size_bytes: FILE_BYTES,
  });
}

export function setup() {
  if (!BASE_URL || !JWT_SECRET) throw new Error('BASE_URL and JWT_SECRET are required');
  if (!['presign', 'prep', 'complete'].includes(MODE)) throw new Error(`unknown MODE ${MODE}`);
  if (MODE in KEYED && !KEYS) throw new Error('KEYS is required');
}

export default function () {
  const n = exec.scenario.iterationInTest;
  switch (MODE) {
    case 'presign': {
      const sub = `bench-pre-${exec.vu.idInTest}`;
      count(http.post(`${BASE_URL}/api/uploads`, presignBody(n), params(sub, JSON_TYPE)), 201);
      break;
    }
    case 'prep': {
      const k = keyed(n);
      const res = http.post(`${BASE_URL}/api/uploads`, presignBody(n),
        params(k.driver, Object.assign({ 'Idempotency-Key': k.key }, JSON_TYPE), 'text'));
      if (!count(res, 201)) return;
      const answer = res.json();
      if (answer.upload_id !== k.id) {
        idMismatch.add(1);
        if (exec.scenario.iterationInTest < 5) {
          console.warn(`prep: upload ${n} got id ${answer.upload_id}, expected ${k.id}`);
        }
        return;
      }
      const form = Object.assign({}, answer.fields, {
        file: http.file(FILE, `bench-${n}.jpg`, 'image/jpeg'),
      });
      const up = http.post(answer.url, form, { tags: { name: 's3-post' } });
      if (up.status < 200 || up.status >= 300) {
        s3Failed.add(1);
        if (exec.scenario.iterationInTest < 2000 && Math.random() < 0.02) {
          console.warn(`prep: S3 POST ${answer.url} -> ${up.status} ${up.error || ''}`);
        }
      }
      break;
    }
    case 'complete': {
      const k = keyed(n);
      count(http.post(`${BASE_URL}/api/uploads/${k.id}/complete`, null, params(k.driver)), 202);
      break;
    }
    default:
      throw new Error(`unknown MODE ${MODE}`);
  }
}

function val(data, metric, key) {
  const m = data.metrics[metric];
  return m && m.values && m.values[key] !== undefined ? m.values[key] : 0;
}

export function handleSummary(data) {
  const seconds = data.state.testRunDurationMs / 1000;
  const statuses = ['status_2xx', 'status_422', 'status_429', 'status_503', 'status_4xx_other',
    'status_5xx_other', 'status_none'];
  const requests = statuses.reduce((sum, name) => sum + val(data, name, 'count'), 0);
  const figures = {
    mode: MODE,
    seconds,
    requests,
    rps: seconds ? requests / seconds : 0,
    p50_ms: val(data, 'api_duration', 'med'),
    p99_ms: val(data, 'api_duration', 'p(99)'),
    ok: val(data, 'status_2xx', 'count'),
    s422: val(data, 'status_422', 'count'),
    s429: val(data, 'status_429', 'count'),
    s503: val(data, 'status_503', 'count'),
    s4xx: val(data, 'status_4xx_other', 'count'),
    s5xx: val(data, 'status_5xx_other', 'count'),
    none: val(data, 'status_none', 'count'),
    id_mismatch: val(data, 'id_mismatch', 'count'),
    s3_failed: val(data, 's3_upload_failed', 'count'),
    keys: KEYED[MODE] || null,
    iterations: val(data, 'iterations', 'count'),
    file_bytes: FILE_BYTES,
  };
  const line = `${MODE}: ${requests} gateway requests in ${seconds.toFixed(1)} s, ` +
    `${figures.rps.toFixed(1)} rps, p50 ${figures.p50_ms.toFixed(2)} ms, ` +
    `p99 ${figures.p99_ms.toFixed(2)} ms, expected status ${figures.ok}\n`;
  const out = { stdout: line };
  if (__ENV.SUMMARY_JSON) out[__ENV.SUMMARY_JSON] = JSON.stringify(figures);
  return out;
}
