// The run's plan, written by the runner (tripline-loadtest) from tests/load/profiles.yaml and
// tests/load/sla.yaml: the scenarios with their sizes, the k6 thresholds, the URLs, how tokens
// are made, and the route classes of the gateway's route table. k6 reads it once per VU at init.
export const plan = JSON.parse(open(__ENV.PLAN));

// The parameters of one scenario of the plan, or null when the profile does not run it.
export function params(name) {
  const scenario = plan.scenarios[name];
  return scenario ? scenario.params : null;
}

// When an iteration of a scenario that started at `startTime` (ms) should end: after windowS,
// and never past the end of the profile's stages, so that no work is left for k6 to cut.
export function iterationDeadline(p, startTime, windowS) {
  return Math.min(Date.now() + windowS * 1000, startTime + p.total_s * 1000);
}
