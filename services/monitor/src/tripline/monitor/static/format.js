// Numbers, durations and times as an operator reads them, and the monitor's clock.

// The browser's clock may differ from the monitor's; ages are measured on the monitor's.
let clockOffsetMs = 0;

/** Align the monitor's clock with ``generatedAt``, a monitor's "now" (unix seconds). */
export function setServerNow(generatedAt) {
  clockOffsetMs = generatedAt * 1000 - Date.now();
}

export function serverNow() {
  return (Date.now() + clockOffsetMs) / 1000;
}

/** A monitor's timestamp (unix seconds) as this browser's clock reads that moment. */
export function serverTime(seconds) {
  return clockTime(seconds * 1000 - clockOffsetMs);
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

export function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 && s < 600 ? ` ${s % 60} s` : ""}`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

export function formatRate(value) {
  if (value === null || value === undefined) return "—";
  if (value === 0) return "0";
  if (value < 1) return value.toFixed(2);
  return value < 10 ? value.toFixed(1) : String(Math.round(value));
}

export function formatPercent(ratio) {
  if (ratio === null || ratio === undefined) return "—";
  if (ratio === 0) return "0%";
  const percent = ratio * 100;
  if (percent < 0.1) return "<0.1%";
  return `${percent < 10 ? percent.toFixed(1) : Math.round(percent)}%`;
}
