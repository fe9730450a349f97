// The uploads scenario: drivers sending identity documents, several uploads per VU side by side.
// Each upload: presign (POST /api/uploads) -> the bytes straight to storage with the presigned
// POST -> complete -> watch GET /api/uploads/{id} until the verdict, backing off as an app does.
// Presign to verdict is tl_upload_verdict_ms. The files are real JPEG, PNG and PDF documents of
// 200 KB to 2 MB that the runner made; their bytes are shared by every VU (k6/experimental/fs)
// and read per upload, so memory follows the uploads in flight, not the VUs.
//
// Each upload loop is one driver uploading up to docs_per_driver documents, paced so that the
// driver's calls stay inside the upload tier (tier_per_min in 60 s): a 429 here would be the
// script's fault, not the platform's.
import http from 'k6/http';
import exec from 'k6/execution';
import { open as fsOpen, SeekMode } from 'k6/experimental/fs';
import { call, record } from './lib/api.js';
import { person } from './lib/auth.js';
import { sleepMs } from './lib/clock.js';
import * as m from './lib/metrics.js';
import { iterationDeadline, params } from './lib/plan.js';
import { pick, uniform } from './lib/random.js';

const P = params('uploads');
const DOC_TYPES = ['license', 'insurance', 'registration', 'profile_photo'];
const VERDICTS = ['verified', 'rejected', 'failed'];
const STORAGE = { class: 'storage', priority: 'storage' };

const files = [];
if (P) {
  for (const f of P.files) files.push({ ...f, handle: await fsOpen(f.path) });
}

// Bodies in flight to storage at once in this VU. Each holds its file and its multipart copy
// in k6's memory: at the full profile's 7,000 uploads, unbounded, k6 reached 18 GB of this
// machine's 24 before it was stopped. The wait for a turn is part of the upload's time.
class Turns {
  constructor(size) {
    this.free = size;
    this.waiting = [];
  }
  async take() {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise((resolve) => this.waiting.push(resolve));
  }
  give() {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}
const storageTurns = new Turns(P ? P.storage_in_flight_per_vu : 1);

// Reads of one handle must not interleave (seek, then read): a chain per file.
const chains = new Map();
function readAll(file) {
  const previous = chains.get(file.path) || Promise.resolve();
  const next = previous.then(async () => {
    const bytes = new Uint8Array(file.size);
    await file.handle.seek(0, SeekMode.Start);
    let offset = 0;
    while (offset < file.size) {
      const n = await file.handle.read(bytes.subarray(offset));
      if (n === null) break;
      offset += n;
    }
    return bytes;
  });
  chains.set(file.path, next.catch(() => null));
  return next;
}

// The driver's calls in the last 60 s, to stay within the upload tier.
class Pace {
  constructor(perMin) {
    this.perMin = perMin;
    this.times = [];
  }
  async take() {
    for (;;) {
      const now = Date.now();
      this.times = this.times.filter((t) => now - t < 60000);
      if (this.times.length < this.perMin) {
        this.times.push(now);
        return;
      }
      await sleepMs(60000 - (now - this.times[0]) + 50);
    }
  }
}

async function uploadOne(who, pace, docType) {
  const file = pick(files);
  const started = Date.now();
  await pace.take();
  const presigned = await call(who, 'POST', '/api/uploads', {}, {
    doc_type: docType,
    filename: file.name,
    content_type: file.content_type,
    size_bytes: file.size,
  });
  if (!presigned.json || !presigned.json.upload_id) return;
  m.uploads.add(1, { step: 'presigned' });
  await storageTurns.take();
  let stored;
  try {
    const bytes = await readAll(file);
    const form = { ...presigned.json.fields, file: http.file(bytes.buffer, file.name, file.content_type) };
    stored = await http.asyncRequest('POST', presigned.json.url, form, {
      tags: { class: STORAGE.class, priority: STORAGE.priority, name: 'POST storage' },
      timeout: '120s',
    });
  } finally {
    storageTurns.give();
  }
  record(stored, STORAGE);
  if (stored.status < 200 || stored.status >= 300) return;
  const id = presigned.json.upload_id;
  await pace.take();
  const completed = await call(who, 'POST', '/api/uploads/{upload_id}/complete', { upload_id: id }, null, {
    idempotencyKey: `${who.name}-${id}`,
  });
  if (completed.outcome !== 'ok') return;
  m.uploads.add(1, { step: 'completed' });
  let wait = P.first_poll_s;
  const giveUp = started + P.verdict_timeout_s * 1000;
  while (Date.now() < giveUp) {
    // The service's estimate, when it gives one, is a better first wait than a guess.
    await sleepMs(wait * 1000);
    await pace.take();
    const seen = await call(who, 'GET', '/api/uploads/{upload_id}', { upload_id: id });
    const status = seen.json && seen.json.status;
    if (VERDICTS.includes(status)) {
      m.verdictTime.add(Date.now() - started);
      m.uploads.add(1, { step: 'verdict', verdict: status });
      return;
    }
    const estimate = seen.json && Number(seen.json.estimated_wait_seconds);
    wait = Math.min(P.max_poll_s, Math.max(P.first_poll_s, estimate > 0 ? estimate : wait * 2));
  }
  m.uploads.add(1, { step: 'timed_out' });
}

async function driverLoop(index, deadline) {
  const vu = exec.vu.idInTest;
  const iteration = exec.vu.iterationInScenario;
  await sleepMs(Math.random() * P.stagger_s * 1000);
  let n = 0;
  // An upload is started only when its verdict can still come before the stages end.
  while (Date.now() < deadline - P.first_poll_s * 4000) {
    const name = `d${vu}-${iteration}-${index}-${n}`;
    const who = { ...person('driver', name, vu * P.uploads_per_vu + index), name };
    const pace = new Pace(P.tier_per_min);
    const types = DOC_TYPES.slice(0, P.docs_per_driver);
    for (const docType of types) {
      if (Date.now() >= deadline - P.first_poll_s * 4000) break;
      await uploadOne(who, pace, docType);
      await sleepMs(uniform(1000, 3000));
    }
    n++;
  }
}

export async function uploads() {
  const deadline = iterationDeadline(P, exec.scenario.startTime, P.window_s);
  if (deadline - Date.now() < P.first_poll_s * 8000) {
    await sleepMs(deadline - Date.now());
    return;
  }
  const loops = [];
  for (let i = 0; i < P.uploads_per_vu; i++) loops.push(driverLoop(i, deadline));
  await Promise.all(loops);
}
