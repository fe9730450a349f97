// Small line charts of one service's series, as inline SVG.

import { el, svg } from "./dom.js";
import { formatAge, formatMs, formatPercent, formatRate } from "./format.js";

// A monitor younger than this still gets charts this wide.
const MIN_CHART_S = 60;

export const CHARTS = [
  { key: "rps", title: "Requests/s", floor: 1, format: formatRate },
  { key: "error_rate", title: "Errors", floor: 0.01, format: formatPercent },
  { key: "p95_ms", title: "p95", floor: 10, format: formatMs },
];

const WIDTH = 240;

const HEIGHT = 80;

const PAD = { left: 2, right: 2, top: 18, bottom: 3 };

/** Charts cover the report's window, or only the part the monitor has seen when it started
 *  later (its history is in memory): a young monitor's lines would be squeezed to the edge. */
export function chartStart(report) {
  const end = report.generated_at;
  const firsts = Object.values(report.services || {})
    .map((stats) => (stats.series || [])[0]?.t)
    .filter((t) => typeof t === "number");
  const seen = firsts.length ? Math.min(...firsts) : end;
  return Math.max(end - report.window_s, Math.min(seen, end - MIN_CHART_S));
}

/** A line of one series over [start, end]; a gap where the value is null (no requests). */
export function drawChart(service, chart, series, start, end) {
  const points = series.filter((p) => p.t >= start && p.t <= end);
  const values = points.map((p) => p[chart.key]).filter((v) => v !== null && v !== undefined);
  const top = niceCeiling(Math.max(chart.floor, ...values));
  const span = Math.max(end - start, 1);
  const x = (t) => PAD.left + ((t - start) / span) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);

  const runs = [];
  let run = [];
  for (const point of points) {
    const value = point[chart.key];
    if (value === null || value === undefined) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push([x(point.t).toFixed(1), y(value).toFixed(1)]);
    }
  }
  if (run.length) runs.push(run);

  const last = points.length ? points[points.length - 1][chart.key] : null;
  const picture = svg(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart",
      "data-series": chart.key },
    svg("title", {}, `${service} ${chart.title} over the last ${formatAge(end - start)}`),
    svg("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(top), y2: y(top) }),
    svg("line", { class: "axis", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(0), y2: y(0) }),
    svg("text", { class: "scale", x: PAD.left, y: PAD.top - 4 }, chart.format(top)),
    ...runs.map((r) =>
      r.length === 1
        ? svg("circle", { class: "dot", cx: r[0][0], cy: r[0][1], r: 2 })
        : svg("polyline", { class: "line", points: r.map((p) => p.join(",")).join(" ") }),
    ),
  );
  return el(
    "figure",
    { class: "chart-box", "data-service": service, "data-series": chart.key },
    el("figcaption", {}, el("span", {}, chart.title), el("strong", {}, chart.format(last))),
    picture,
  );
}

/** The smallest 1, 2 or 5 × 10^n at or above ``value``. */
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}
