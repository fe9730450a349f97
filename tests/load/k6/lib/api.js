// Requests through the gateway as an app makes them: the route of the contract names the call,
// the plan gives its class and priority (from the gateway's own route table), and every answer
// is sorted into ok, limited, shed, conflict or error for the SLAs.
import http from 'k6/http';
import { plan } from './plan.js';
import * as m from './metrics.js';

const BASE = plan.base_url;
const SHED_TYPE = /overloaded/;

// Which outcome a status is. 503 counts as shed only when the gateway says it shed the request
// (problem type "overloaded"); a 503 for a dependency that is away is an error.
// `expected` lists other statuses the contract gives for a normal answer (a 404 for a location
// nobody sent yet).
export function outcomeOf(res, expected) {
  const status = res.status;
  if ((status >= 200 && status < 300) || (expected && expected.includes(status))) return 'ok';
  if (status === 429) return 'limited';
  if (status === 409) return 'conflict';
  if (status === 503 && SHED_TYPE.test(String(res.body || ''))) return 'shed';
  return 'error';
}

// Counts one answer in the run's metrics under `route` ({class, priority}).
export function record(res, route, expected) {
  const outcome = outcomeOf(res, expected);
  m.responses.add(1, { priority: route.priority, outcome });
  m.statuses.add(1, { status: String(res.status) });
  m.errors.add(outcome === 'error' ? 1 : 0, { class: route.class });
  if (res.status >= 500 && outcome !== 'shed') {
    m.unexpected5xx.add(1, { class: route.class, status: String(res.status) });
  }
  return outcome;
}

function routeOf(method, pattern) {
  const route = plan.routes[`${method} ${pattern}`];
  if (!route) throw new Error(`${method} ${pattern} is not a route of the gateway`);
  return route;
}

function fill(pattern, values) {
  return pattern.replace(/\{(\w+)\}/g, (_, name) => {
    if (values[name] === undefined) throw new Error(`${pattern}: no value for ${name}`);
    return encodeURIComponent(values[name]);
  });
}

// One call of the contract: `call(who, 'POST', '/api/trips/{trip_id}/status', {trip_id}, body)`.
// opts: idempotencyKey, query, expected (see outcomeOf).
// Resolves to {res, outcome, json} where json is the parsed body (null when it is not JSON).
export async function call(who, method, pattern, values, body, opts) {
  const route = routeOf(method, pattern);
  const options = opts || {};
  const headers = { Authorization: `Bearer ${who.token}` };
  if (body !== null && body !== undefined) headers['Content-Type'] = 'application/json';
  if (options.idempotencyKey) headers['Idempotency-Key'] = options.idempotencyKey;
  const query = options.query ? `?${options.query}` : '';
  const res = await http.asyncRequest(
    method,
    `${BASE}${fill(pattern, values || {})}${query}`,
    body === null || body === undefined ? null : JSON.stringify(body),
    {
      headers,
      tags: { class: route.class, priority: route.priority, name: `${method} ${pattern}` },
      timeout: '30s',
      responseCallback: http.expectedStatuses({ min: 200, max: 299 }, 409),
    },
  );
  const outcome = record(res, route, options.expected);
  let json = null;
  if (res.body && String(res.headers['Content-Type'] || '').includes('json')) {
    try {
      json = JSON.parse(res.body);
    } catch (_) {
      json = null;
    }
  }
  return { res, outcome, json };
}
