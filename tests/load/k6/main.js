// The load test's one entry point: `k6 run -e PLAN=<plan.json> tests/load/k6/main.js`, which the
// runner (tripline-loadtest, `make loadtest`) writes and starts. The plan picks the scenarios and
// their executors (users, uploads, tracking; the spike is all three ramping together), and the
// thresholds, which come from tests/load/sla.yaml: a breach makes k6 exit 99.
import { plan } from './lib/plan.js';
import { setupTrips } from './tracking.js';

export { users } from './users.js';
export { uploads } from './uploads.js';
export { tracking } from './tracking.js';

export const options = {
  scenarios: plan.k6.scenarios,
  thresholds: plan.k6.thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  setupTimeout: plan.k6.setup_timeout,
  // Enough sockets per host for hundreds of simulated people in one VU.
  batchPerHost: 50,
  userAgent: `tripline-loadtest/${plan.run_id}`,
};

export function setup() {
  return { trips: setupTrips() };
}

export function handleSummary(data) {
  return {
    [plan.summary_path]: JSON.stringify(data),
    stdout: `k6 summary written to ${plan.summary_path}\n`,
  };
}
