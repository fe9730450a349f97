// Each panel of the page drawn from one admin endpoint's JSON.

import { CHARTS, chartStart, drawChart } from "./charts.js";
import { el, fill } from "./dom.js";
import {
  formatAge,
  formatMs,
  formatPercent,
  formatRate,
  serverNow,
  serverTime,
  setServerNow,
} from "./format.js";

// A look older than this is flagged: the monitor is answering from an old check.
const OLD_LOOK_S = 30;

const STATE_TONE = {
  ok: "good", ready: "good",
  degraded: "warn", unready: "warn", draining: "warn", warning: "warn",
  down: "bad", unreachable: "bad", critical: "bad",
};

function byName(mapping) {
  return Object.entries(mapping || {}).sort(([a], [b]) => a.localeCompare(b));
}

function badge(state) {
  const word = state || "unknown";
  return el("span", { class: `state state-${STATE_TONE[word] || "unknown"}` }, word);
}

function fillBody(table, rows, empty) {
  const columns = table.tHead.rows[0].cells.length;
  fill(table.tBodies[0], rows, () =>
    el("tr", {}, el("td", { colspan: columns, class: "muted" }, empty)),
  );
}

function renderHealth(health) {
  const status = document.getElementById("platform-status");
  status.textContent = health.status;
  status.className = `state state-${STATE_TONE[health.status] || "unknown"}`;

  showCheckedAt("health-checked", health.checked_at);
  const dependencies = Object.entries(health.dependencies || {}).map(([name, dep]) =>
    el(
      "tr",
      { "data-dependency": name, "data-state": dep.state },
      el("th", { scope: "row" }, name),
      el("td", {}, badge(dep.state)),
      el("td", { class: "num" }, formatMs(dep.latency_ms)),
      el("td", { class: "age" }, lastOk(dep, health.checked_at)),
      el("td", { class: "detail" }, dependencyDetail(dep)),
    ),
  );
  fillBody(document.getElementById("dependencies"), dependencies, "No dependency reported");

  const replicas = [];
  for (const [service, info] of byName(health.services)) {
    const list = info.replicas || [];
    const serviceCell = el(
      "th",
      { scope: "rowgroup", rowspan: Math.max(list.length, 1) },
      el("span", { class: "service-name" }, service),
      " ",
      badge(info.state),
    );
    if (list.length === 0) {
      replicas.push(
        el(
          "tr",
          { "data-service": service, "data-service-state": info.state },
          serviceCell,
          el("td", { colspan: 4, class: "muted" }, "no replica configured"),
        ),
      );
    }
    list.forEach((replica, index) => {
      replicas.push(
        el(
          "tr",
          {
            "data-service": service,
            "data-service-state": info.state,
            "data-url": replica.url,
            "data-state": replica.state,
          },
          index === 0 ? serviceCell : null,
          el("td", { class: "url" }, replica.url),
          el("td", {}, badge(replica.state)),
          el("td", { class: "num" }, formatMs(replica.latency_ms)),
          el("td", { class: "detail" }, replicaProblem(replica)),
        ),
      );
    });
  }
  fillBody(document.getElementById("replicas"), replicas, "No replica reported");
}

function showCheckedAt(id, checkedAt) {
  // A time, not an age: an age would turn false on a page that stopped refreshing.
  const old = serverNow() - checkedAt > OLD_LOOK_S;
  const note = document.getElementById(id);
  note.textContent = `checked at ${serverTime(checkedAt)}${old ? " (an old look)" : ""}`;
  note.className = old ? "checked tone-warn" : "checked muted";
}

function lastOk(dep, checkedAt) {
  if (dep.state === "ok") return "now";
  if (dep.last_ok_at === null || dep.last_ok_at === undefined) return "never";
  return `${formatAge(checkedAt - dep.last_ok_at)} ago`;
}

function dependencyDetail(dep) {
  const parts = [];
  // The monitor keeps the last error after a recovery: it tells of flapping, but is history.
  if (dep.last_error) {
    parts.push(`${dep.state === "ok" ? "last error" : "error"}: ${dep.last_error}`);
  }
  for (const [key, value] of Object.entries(dep.detail || {})) {
    if (value === null || value === undefined) continue;
    if (Array.isArray(value)) {
      // The queues' detail names the queues nobody consumes: that is the news, when any.
      if (value.length > 0) parts.push(`${key}: ${value.join(", ")}`);
    } else if (typeof value === "object") {
      const entries = byName(value).map(([name, count]) => `${name} ${count}`);
      if (entries.length > 0) parts.push(`${key}: ${entries.join(", ")}`);
    } else {
      parts.push(`${key} ${value}`);
    }
  }
  return parts.join(" · ");
}

function replicaProblem(replica) {
  if (replica.last_error) return replica.last_error;
  return Object.entries(replica.checks || {})
    .filter(([, check]) => check && check.ok === false)
    .map(([name, check]) => {
      const optional = check.required === false ? " (optional)" : "";
      return `${name} failing${optional}${check.error ? `: ${check.error}` : ""}`;
    })
    .join(" · ");
}

function renderQueues(status) {
  showCheckedAt("queues-checked", status.checked_at);
  const queues = (status.queues || []).map((queue) => {
    // A queue nobody consumes is degraded even while empty: the next job would wait for ever.
    const starved = queue.workers === 0;
    return el(
      "tr",
      { "data-queue": queue.name, "data-state": starved ? "degraded" : "ok" },
      el("th", { scope: "row" }, queue.name),
      el("td", { class: "num" }, String(queue.depth)),
      el("td", { class: "num" }, String(queue.in_flight)),
      el("td", { class: "num" }, formatRate(queue.rate_per_min)),
      el(
        "td",
        { class: queue.failed_last_hour > 0 ? "num tone-warn" : "num" },
        String(queue.failed_last_hour),
      ),
      el("td", { class: "num" }, formatAge(queue.oldest_age_s)),
      el(
        "td",
        { class: starved ? "num tone-bad" : "num" },
        starved ? "0 (none online)" : String(queue.workers),
      ),
    );
  });
  fillBody(document.getElementById("queues"), queues, "No queue reported");

  // Dead or rejected entries are lost work someone must look at; others only wait their turn.
  const lost = (backlog) => /dead|rejected/.test(backlog.name) && backlog.length > 0;
  const backlogs = (status.backlogs || []).map((backlog) =>
    el(
      "tr",
      { "data-backlog": backlog.name },
      el("th", { scope: "row" }, backlog.name),
      el("td", { class: lost(backlog) ? "num tone-warn" : "num" }, String(backlog.length)),
    ),
  );
  fillBody(document.getElementById("backlogs"), backlogs, "No backlog reported");
}

function renderAlerts(alerts) {
  const now = serverNow();
  const active = (alerts.active || []).map((alert) =>
    el(
      "li",
      {
        "data-alert": alert.id,
        "data-severity": alert.severity,
        class: `alert tone-${STATE_TONE[alert.severity] || "unknown"}`,
      },
      badge(alert.severity),
      el("span", { class: "summary" }, alert.summary),
      el("span", { class: "since" }, `for ${formatAge(now - alert.started_at)}`),
    ),
  );
  fill(document.getElementById("alerts"), active, () =>
    el("li", { class: "none" }, "No active alerts"),
  );

  const recent = (alerts.recent || []).slice(0, 10).map((alert) =>
    el(
      "li",
      { "data-alert": alert.id, class: "alert resolved" },
      el("span", { class: "summary" }, alert.summary),
      el(
        "span",
        { class: "since" },
        alert.resolved_at ? `resolved ${formatAge(now - alert.resolved_at)} ago` : "resolved",
      ),
    ),
  );
  fill(document.getElementById("recent-alerts"), recent, () =>
    el("li", { class: "none" }, "Nothing resolved lately"),
  );
}

function renderMetrics(report) {
  setServerNow(report.generated_at);
  const end = report.generated_at;
  const start = chartStart(report);
  document.getElementById("metrics-window").textContent =
    `(${serverTime(start)} to ${serverTime(end)})`;
  const cards = byName(report.services).map(([service, stats]) =>
    el(
      "article",
      { class: "service-charts", "data-service": service },
      el("h3", {}, service),
      el(
        "p",
        { class: "totals" },
        `${formatRate(stats.rps)} req/s · ${formatPercent(stats.error_rate)} errors · ` +
          `p95 ${formatMs(stats.p95_ms)} · ${stats.requests ?? 0} requests ` +
          `in the last ${formatAge(report.window_s)}`,
      ),
      scrapeLine(service, report.targets || []),
      el(
        "div",
        { class: "chart-row" },
        ...CHARTS.map((chart) => drawChart(service, chart, stats.series || [], start, end)),
      ),
    ),
  );
  fill(document.getElementById("charts"), cards, () =>
    el("p", { class: "muted" }, "No service scraped yet"),
  );
}

function scrapeLine(service, allTargets) {
  const targets = allTargets.filter((target) => target.service === service);
  if (targets.length === 0) return null;
  const down = targets.filter((target) => !target.up);
  return el(
    "p",
    { class: down.length ? "scrape tone-bad" : "scrape muted" },
    `${targets.length - down.length}/${targets.length} replicas scraped`,
    ...down.map((target) => ` · ${target.url}: ${target.last_error || "not scraped"}`),
  );
}

export const RENDERERS = {
  health: renderHealth,
  queues: renderQueues,
  metrics: renderMetrics,
  alerts: renderAlerts,
};
