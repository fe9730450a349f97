// The operators' status page: reads the monitor's admin JSON every few seconds and draws it.
// No library and no build step: native modules, served by the monitor next to this one.

import { el } from "./dom.js";
import { clockTime } from "./format.js";
import { RENDERERS } from "./panels.js";

const REFRESH_MS = 5000;
// A monitor that hangs shows as unreachable within this, before the next refresh is due.
const FETCH_TIMEOUT_MS = 4000;
const METRICS_WINDOW_S = 600;
const TOKEN_KEY = "tripline.ops.token";
// Relative to the page (/ops), so the page also works behind a path prefix.
// Metrics first: its generated_at sets the clock the others' ages are measured on.
const SOURCES = {
  metrics: `api/admin/metrics?window_s=${METRICS_WINDOW_S}`,
  health: "api/admin/health",
  queues: "api/admin/queues/status",
  alerts: "api/admin/alerts",
};

let timer = 0;
let inFlight = false;

class Refused extends Error {}

// ---- the token ---------------------------------------------------------------------------

function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** Move a `#token=...` out of the address bar (and history) into this tab's storage. */
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has("token")) return;
  const token = (params.get("token") || "").trim();
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
}

function askForToken(reason) {
  const form = document.getElementById("sign-in");
  document.getElementById("sign-in-reason").textContent = reason;
  form.hidden = false;
  document.getElementById("token-input").focus();
}

function onTokenSubmitted(event) {
  event.preventDefault();
  const input = document.getElementById("token-input");
  const token = input.value.trim();
  input.value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("sign-in").hidden = true;
  tick();
}

// ---- fetching ----------------------------------------------------------------------------

async function getJson(path, token) {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch(new URL(path, document.baseURI), {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      signal: controller.signal,
    });
    if (response.status === 401 || response.status === 403) {
      throw new Refused(`HTTP ${response.status}`);
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return await response.json();
  } catch (error) {
    if (error.name === "AbortError") throw new Error("no answer in time");
    if (error instanceof TypeError) throw new Error("no connection");
    throw error;
  } finally {
    clearTimeout(timeout);
  }
}

/** One refresh: every source at once; each one drawn, or its panels greyed, on its own. */
async function refresh() {
  const token = currentToken();
  if (!token) {
    askForToken("This page reads the monitor's admin endpoints: paste an admin token.");
    return;
  }
  const names = Object.keys(SOURCES);
  const results = await Promise.allSettled(names.map((name) => getJson(SOURCES[name], token)));
  const failed = [];
  results.forEach((result, index) => {
    const name = names[index];
    const error = result.status === "fulfilled" ? draw(name, result.value) : result.reason;
    if (error === null) {
      markFresh(name);
    } else {
      failed.push({ name, reason: error.message, refused: error instanceof Refused });
      markStale(name, error.message);
    }
  });
  const refused = failed.find((failure) => failure.refused);
  const answered = failed.length < names.length;
  if (answered) {
    document.getElementById("last-refresh").textContent = clockTime(Date.now());
    document.getElementById("last-refresh").dateTime = new Date().toISOString();
  }
  document.body.classList.toggle("unreachable", !answered);
  if (refused && currentToken() === token) {
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken(
      `The monitor refused the token (${refused.reason}): it is missing, expired or not an ` +
        "admin's. Paste an admin token.",
    );
    showConnection("Token refused: the data below is not being refreshed.");
  } else if (!answered) {
    showConnection(`Monitor unreachable (${failed[0].reason}): showing the last data received.`);
  } else if (failed.length > 0) {
    showConnection(
      "Partly stale: " + failed.map((f) => `${f.name} (${f.reason})`).join(", ") + ".",
    );
  } else {
    showConnection("");
  }
  updateTitle(answered);
}

/** Draw one source's answer: null when drawn, else the error to show for it. */
function draw(name, body) {
  try {
    RENDERERS[name](body);
    return null;
  } catch (error) {
    console.error(`could not draw ${name}`, error);
    return new Error(`could not draw it: ${error.message}`);
  }
}

async function tick() {
  clearTimeout(timer);
  // The refresh under way schedules the next one.
  if (inFlight) return;
  inFlight = true;
  const token = currentToken();
  try {
    await refresh();
  } catch (error) {
    console.error("refresh failed", error);
  } finally {
    inFlight = false;
  }
  if (currentToken()) timer = setTimeout(tick, currentToken() === token ? REFRESH_MS : 0);
}

function showConnection(message) {
  const banner = document.getElementById("connection");
  banner.textContent = message;
  banner.hidden = !message;
}

function markStale(source, reason) {
  for (const panel of document.querySelectorAll(`[data-source="${source}"]`)) {
    panel.classList.add("stale");
    let note = panel.querySelector(".stale-note");
    if (note === null) {
      note = el("p", { class: "stale-note" });
      panel.querySelector("h2").after(note);
    }
    if (!note.textContent) note.textContent = `Stale since ${clockTime(Date.now())}: ${reason}`;
  }
  if (source === "health") document.getElementById("platform-status").classList.add("stale");
}

function markFresh(source) {
  for (const panel of document.querySelectorAll(`[data-source="${source}"]`)) {
    panel.classList.remove("stale");
    panel.querySelector(".stale-note")?.remove();
  }
  if (source === "health") document.getElementById("platform-status").classList.remove("stale");
}

function updateTitle(answered) {
  const status = document.getElementById("platform-status").textContent;
  const shown = answered ? status : "unreachable";
  document.title = `${shown.toUpperCase()} · Tripline operations`;
}

// ---- start -------------------------------------------------------------------------------

takeTokenFromFragment();
document.getElementById("token-form").addEventListener("submit", onTokenSubmitted);
window.addEventListener("hashchange", () => {
  takeTokenFromFragment();
  document.getElementById("sign-in").hidden = Boolean(currentToken());
  tick();
});
// Background tabs get their timers slowed down; catch up as soon as someone looks.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") tick();
});
tick();
