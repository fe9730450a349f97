// The reference measurement of a run: VUS virtual users asking the reference service (a bare
// Starlette JSON endpoint on Tripline's server stack) for DURATION, as fast as it answers. The
// runner divides the run's figures by these. Env: URL, VUS, DURATION, SUMMARY_PATH.
import http from 'k6/http';

export const options = {
  vus: Number(__ENV.VUS || 20),
  duration: __ENV.DURATION || '8s',
  summaryTrendStats: ['med', 'p(95)', 'p(99)', 'count'],
};

export default function () {
  http.get(__ENV.URL);
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY_PATH]: JSON.stringify(data), stdout: '' };
}
