// Tokens for the simulated people. Two sources, as the plan says:
//   "secret": HS256 tokens signed here with JWT_SECRET (a local stack, or a staging deployment
//             whose signing key the pipeline holds); the key comes from the environment, never
//             from the plan file on disk;
//   "file":   pre-issued tokens from TOKENS_FILE, {"rider": [...], "driver": [...], "admin": [...]},
//             for a deployment whose key the tester does not hold; user i of a role takes token
//             i modulo the list, so the file bounds how many distinct people the run has.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { plan } from './plan.js';

const SECRET = __ENV.JWT_SECRET || '';
const TOKENS = plan.auth.mode === 'file' ? JSON.parse(open(__ENV.TOKENS_FILE)) : null;
const TTL_S = 6 * 3600;

function b64url(text) {
  return encoding.b64encode(text, 'rawurl');
}

function signed(sub, role) {
  if (!SECRET) throw new Error('JWT_SECRET is not set and the plan signs tokens');
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, role, iat: now, exp: now + TTL_S }));
  return `${head}.${body}.${crypto.hmac('sha256', SECRET, `${head}.${body}`, 'base64rawurl')}`;
}

// A person of this run: `name` is unique within the run (e.g. "r-3-7"); the subject carries the
// run's id so that two runs against one deployment never share users or their rate limits.
export function person(role, name, index) {
  if (TOKENS) {
    const list = TOKENS[role];
    if (!list || list.length === 0) throw new Error(`TOKENS_FILE has no ${role} tokens`);
    return { role, token: list[index % list.length] };
  }
  return { role, token: signed(`${plan.run_id}-${name}`, role) };
}
