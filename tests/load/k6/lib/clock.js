import { setTimeout } from 'k6/timers';

// A promise resolved after `ms`: many simulated users wait side by side in one VU.
export function sleepMs(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
