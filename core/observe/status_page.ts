/**
 * The status page served at `/_ep/`: one self-contained HTML document (inline CSS and
 * script, no CDN, no build step). It is a string constant in a module so that
 * `deno compile` embeds it with the code, without an `--include`.
 *
 * The page polls `stats` (relative: `/_ep/stats`) every second and passes on a `?token=`
 * from its own address as `Authorization: Bearer`. It writes text with `textContent` only:
 * service and worker names come from peers, and are shown through the same
 * `escapeControls` as the CLI and the logs (its source is embedded), so that no control,
 * line separator or bidi override in a name reaches the screen. Elements carry `data-*` hooks that the
 * browser test reads: `tr[data-service]`, `tr[data-unknown]`, `tr[data-worker]`,
 * `tr[data-error]`, `[data-field]`, `[data-total]`, `[data-limit]`, `button[data-action]`,
 * and `body[data-updates]` (successful polls).
 *
 * It shows per service its own jobs among its workers' slots (shared with their other
 * services), failures by outcome, jobs for unknown services as one row, per worker its
 * OK/failed counts, last error and state history, the last errors with their request ids,
 * and the limits in force. Its buttons call the admin API (`admin/drain`, `admin/disable`,
 * `admin/enable`, `admin/set`: POST with a JSON body and the page's token), so they work
 * for whoever may read the page, and the result or refusal is shown in `#notice`.
 *
 * @module
 */
import { ESCAPE_CONTROLS_JS } from "../escape.ts";

/**
 * The status page's HTML.
 *
 * @example
 * ```ts
 * import { STATUS_PAGE_HTML } from "./status_page.ts";
 * console.assert(STATUS_PAGE_HTML.startsWith("<!doctype html>"));
 * ```
 */
export const STATUS_PAGE_HTML: string = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>ep status</title>
<style>
:root {
  --bg: #f6f7f9; --panel: #ffffff; --text: #1d2330; --muted: #667085; --line: #e3e6eb;
  --accent: #2f6fdb; --accent-soft: rgba(47,111,219,.14); --warn: #d97706; --bad: #d1342f;
  --good: #16a34a; --bar: #e8ecf2;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #12151b; --panel: #1a1e26; --text: #e6e9ef; --muted: #9aa3b2; --line: #2a303b;
    --accent: #6ea2ff; --accent-soft: rgba(110,162,255,.18); --warn: #f0a23b; --bad: #f26b66;
    --good: #4ade80; --bar: #2a303b;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
.num, td.n, th.n { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
header {
  display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1rem;
  padding: .9rem 1.25rem; background: var(--panel); border-bottom: 1px solid var(--line);
}
header h1 { margin: 0; font-size: 1.25rem; letter-spacing: .02em; }
header .meta { color: var(--muted); }
#live { margin-left: auto; display: inline-flex; align-items: center; gap: .4rem; color: var(--muted); }
#live::before {
  content: ""; width: .6rem; height: .6rem; border-radius: 50%; background: var(--muted);
}
#live.ok::before { background: var(--good); }
#live.stale::before { background: var(--bad); }
main { padding: 1rem 1.25rem 2rem; max-width: 1400px; margin: 0 auto; }
.tiles {
  display: grid; gap: .75rem; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr));
  margin-bottom: 1.25rem;
}
.tile {
  background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  padding: .65rem .8rem; min-width: 0;
}
.tile .label { color: var(--muted); font-size: .8rem; }
.tile .value { font-size: 1.45rem; font-weight: 600; font-variant-numeric: tabular-nums;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tile .value.small { font-size: 1.15rem; line-height: 2.1rem; }
.tile svg { display: block; width: 100%; height: 28px; margin-top: .2rem; }
section.card {
  background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  margin-bottom: 1.25rem; overflow: hidden;
}
section.card h2 {
  margin: 0; padding: .6rem .9rem; font-size: 1rem; border-bottom: 1px solid var(--line);
  display: flex; gap: .75rem; align-items: baseline;
}
section.card h2 small { color: var(--muted); font-weight: normal; font-size: .8rem; }
.scroll { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: .45rem .7rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { color: var(--muted); font-weight: 500; font-size: .8rem; text-align: left; white-space: nowrap; }
tbody tr:last-child td { border-bottom: 0; }
td.name { font-weight: 600; overflow-wrap: anywhere; min-width: 7rem; }
td.empty { color: var(--muted); text-align: center; padding: 1rem; }
.bad { color: var(--bad); }
.warn { color: var(--warn); }
.muted { color: var(--muted); }
.pill {
  display: inline-block; padding: 0 .5rem; border-radius: 999px; font-size: .8rem;
  background: var(--accent-soft); color: var(--accent);
}
.pill.draining, .pill.restarting, .pill.starting { background: rgba(217,119,6,.15); color: var(--warn); }
.pill.stopped, .pill.stopping { background: rgba(209,52,47,.15); color: var(--bad); }
.meter { display: inline-block; width: 70px; height: 7px; border-radius: 4px; background: var(--bar);
  vertical-align: middle; margin-right: .4rem; overflow: hidden; }
.meter i { display: block; height: 100%; background: var(--accent); }
.sparks { display: flex; flex-wrap: wrap; gap: .25rem .5rem; }
/* The services table fits 1200 px with long names and large numbers: names wrap at word
   boundaries within a minimum width, descriptions are clamped to two lines, big counts are
   compact (exact in the title), the meter is short, and the trends wrap onto lines. */
#services th, #services td { padding-left: .5rem; padding-right: .5rem; }
#services td.name { min-width: 11rem; }
#services small.sub { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical;
  overflow: hidden; overflow-wrap: anywhere; }
#services .meter { width: 36px; }
.sparks figure { margin: 0; }
.sparks figcaption { font-size: .7rem; color: var(--muted); text-align: left; white-space: nowrap; }
.sparks svg { display: block; width: 64px; height: 22px; }
svg .line { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
svg .area { fill: var(--accent-soft); stroke: none; }
svg.queue .line { stroke: var(--warn); } svg.queue .area { fill: rgba(217,119,6,.15); }
svg.wait .line { stroke: var(--good); } svg.wait .area { fill: rgba(22,163,74,.13); }
footer { color: var(--muted); font-size: .8rem; display: flex; flex-wrap: wrap; gap: .35rem 1.25rem; }
#error, #notice { display: none; margin-bottom: 1rem; padding: .6rem .9rem; border-radius: 8px;
  background: rgba(209,52,47,.12); color: var(--bad); }
#error.on, #notice.on { display: block; }
#notice.good { background: rgba(22,163,74,.12); color: var(--good); }
.pill.disabled, .pill.drained { background: rgba(209,52,47,.15); color: var(--bad); }
small.sub { display: block; color: var(--muted); font-weight: normal; font-size: .75rem; word-break: normal; }
.more { color: var(--muted); font-size: .75rem; margin-left: .2rem; }
td.actions { white-space: nowrap; }
button { font: inherit; font-size: .75rem; padding: .15rem .45rem; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--line); background: var(--panel); color: var(--text); }
button:hover:not(:disabled) { border-color: var(--accent); color: var(--accent); }
button:disabled { opacity: .4; cursor: default; }
input.num { width: 6.5rem; font: inherit; font-size: .8rem; padding: .1rem .3rem; border-radius: 6px;
  border: 1px solid var(--line); background: var(--bg); color: var(--text); }
.grid2 { display: grid; gap: 1.25rem; grid-template-columns: repeat(auto-fit, minmax(min(420px, 100%), 1fr)); }
dl.limits { margin: 0; padding: .6rem .9rem; display: grid; grid-template-columns: max-content 1fr;
  gap: .2rem 1rem; font-size: .85rem; }
dl.limits dt { color: var(--muted); }
dl.limits dd { margin: 0; font-variant-numeric: tabular-nums; }
td.msg { word-break: break-word; }
@media (max-width: 760px) {
  header { padding: .75rem .9rem; }
  main { padding: .75rem .6rem 1.5rem; }
  .tiles { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: .5rem; }
  .tile .value { font-size: 1.2rem; }
  .tile .value.small { font-size: 1rem; }
  table.cards thead { display: none; }
  table.cards, table.cards tbody, table.cards tr, table.cards td { display: block; width: 100%; }
  table.cards tr { padding: .5rem .75rem; border-bottom: 1px solid var(--line);
    display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); column-gap: 1.25rem; }
  table.cards tbody tr:last-child { border-bottom: 0; }
  table.cards td { border: 0; padding: .12rem 0; display: flex; justify-content: space-between;
    align-items: center; gap: .5rem; text-align: right; min-width: 0; }
  table.cards td::before { content: attr(data-label); color: var(--muted); text-align: left;
    font-size: .8rem; white-space: nowrap; }
  table.cards td.name, table.cards td.sparkcell, table.cards td.wide, table.cards td.empty {
    grid-column: 1 / -1; }
  table.cards td.name { font-size: 1.05rem; padding-bottom: .25rem; }
  table.cards td.name::before, table.cards td.sparkcell::before, table.cards td.empty::before {
    content: none; }
  table.cards td.sparkcell { display: block; padding-top: .4rem; }
  table.cards td.empty { display: block; text-align: center; }
  .meter { width: 40px; }
  .sparks svg { width: 100%; }
  .sparks figure { flex: 1; min-width: 0; }
}
</style>
</head>
<body data-updates="0">
<header>
  <h1>ep</h1>
  <span class="meta" id="where"></span>
  <span class="meta" id="version"></span>
  <span class="meta">up <span id="uptime" data-total="uptime">&ndash;</span></span>
  <span id="live">connecting</span>
</header>
<main>
  <div id="error" role="alert"></div>
  <div id="notice" role="status"></div>
  <div class="tiles">
    <div class="tile"><div class="label">Jobs / s</div><div class="value" data-total="rate">&ndash;</div><svg id="spark-rate" viewBox="0 0 100 28" preserveAspectRatio="none"></svg></div>
    <div class="tile"><div class="label">Queued</div><div class="value" data-total="queued">&ndash;</div><svg id="spark-queued" class="queue" viewBox="0 0 100 28" preserveAspectRatio="none"></svg></div>
    <div class="tile"><div class="label">Slots busy</div><div class="value" data-total="busy">&ndash;</div><svg id="spark-busy" viewBox="0 0 100 28" preserveAspectRatio="none"></svg></div>
    <div class="tile"><div class="label">Jobs answered</div><div class="value" data-total="jobs">&ndash;</div><div class="label"><span data-total="ok">&ndash;</span> ok &middot; <span data-total="failed">&ndash;</span> failed</div></div>
    <div class="tile"><div class="label">Workers</div><div class="value" data-total="providers">&ndash;</div><div class="label"><span data-total="redelivered">&ndash;</span> redelivered</div></div>
    <div class="tile"><div class="label">In / out per s</div><div class="value small"><span data-total="bytesIn">&ndash;</span> / <span data-total="bytesOut">&ndash;</span></div><div class="label"><span data-total="open">&ndash;</span> connections open</div></div>
  </div>
  <section class="card">
    <h2>Services <small>queue wait and service time over the last minute; trends over the last minutes</small></h2>
    <div class="scroll"><table id="services" class="cards">
      <thead><tr>
        <th>Service</th><th class="n">Queue</th><th class="n">Jobs/s</th><th class="n">Wait p50 / p99</th>
        <th class="n">Run p50 / p99</th>
        <th class="n" title="This service's jobs running in its workers, and their slots (shared with the workers' other services)">Slots busy</th>
        <th class="n">Workers</th><th class="n">OK</th><th class="n">Failed</th>
        <th>Trend</th>
      </tr></thead>
      <tbody><tr><td class="empty" colspan="10">Loading&hellip;</td></tr></tbody>
    </table></div>
  </section>
  <section class="card">
    <h2>Workers <small>module workers and this process's handler threads</small></h2>
    <div class="scroll"><table id="workers" class="cards">
      <thead><tr>
        <th>Worker</th><th>Address</th><th>Services</th><th class="n">Slots busy</th>
        <th class="n">OK</th><th class="n">Failed</th><th>Last error</th>
        <th class="n">Last heard</th><th class="n">Connected</th><th>State</th><th>Actions</th>
      </tr></thead>
      <tbody><tr><td class="empty" colspan="11">Loading&hellip;</td></tr></tbody>
    </table></div>
  </section>
  <section class="card">
    <h2>Outcomes <small>jobs answered per service, by outcome</small></h2>
    <div class="scroll"><table id="outcomes" class="cards">
      <thead><tr><th>Service</th><th class="n">ok</th><th class="n">error</th><th class="n">timeout</th>
        <th class="n">overloaded</th><th class="n">no_service</th><th class="n">worker_lost</th>
        <th class="n">shutting_down</th><th class="n">cancelled</th></tr></thead>
      <tbody><tr><td class="empty" colspan="9">Loading&hellip;</td></tr></tbody>
    </table></div>
  </section>
  <section class="card">
    <h2>Recent errors <small>the last ones, newest first, with the request id the client got (ep errors has more)</small></h2>
    <div class="scroll"><table id="errors" class="cards">
      <thead><tr><th>Time</th><th>Service</th><th>Error</th><th>Request id</th><th>Worker</th><th>Message</th></tr></thead>
      <tbody><tr><td class="empty" colspan="6">Loading&hellip;</td></tr></tbody>
    </table></div>
  </section>
  <div class="grid2">
    <section class="card" id="limits">
      <h2>Limits <small>in force</small></h2>
      <dl class="limits" id="limits-list"></dl>
    </section>
    <section class="card">
      <h2>Queue bounds <small>per service (ep set &lt;service&gt; max_queue &lt;n&gt;)</small></h2>
      <div class="scroll"><table id="queues">
        <thead><tr><th>Service</th><th class="n">Queued</th><th class="n">Max queue</th><th>Set</th></tr></thead>
        <tbody></tbody>
      </table></div>
    </section>
  </div>
  <section class="card" id="threads-card" hidden>
    <h2>Handler threads <small>ring occupancy and wake-ups</small></h2>
    <p id="threads-scale" class="muted" hidden></p>
    <div class="scroll"><table id="threads" class="cards">
      <thead><tr>
        <th>Thread</th><th>State</th><th class="n">In flight</th><th class="n">Done</th>
        <th class="n">Restarts</th><th class="n">Job ring</th><th class="n">Reply ring</th>
        <th class="n">Wake-ups</th>
      </tr></thead>
      <tbody></tbody>
    </table></div>
  </section>
  <footer id="footer"></footer>
</main>
<script>
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var token = params.get("token");
  var headers = token ? { Authorization: "Bearer " + token } : {};
  var updates = 0;
  var lastOk = 0;
  var SVG = "http://www.w3.org/2000/svg";

  ${ESCAPE_CONTROLS_JS}
  function show(value) { return escapeControls(String(value)); }
  function $(sel) { return document.querySelector(sel); }
  function $all(sel) { return document.querySelectorAll(sel); }
  function text(node, value) { if (node.textContent !== value) node.textContent = value; }
  function el(tag, cls, content) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined && content !== null) e.textContent = String(content);
    return e;
  }
  function cell(row, label, value, cls, field) {
    var td = el("td", cls, value);
    td.setAttribute("data-label", label);
    if (field) td.setAttribute("data-field", field);
    row.appendChild(td);
    return td;
  }
  function fmtInt(n) {
    if (n === null || n === undefined || isNaN(n)) return "\u2013";
    return Math.round(n).toLocaleString("en-US");
  }
  // A count in at most about five characters: 123,456 as is, 1.23 M, 123 M, 1.2 G.
  function fmtCount(n) {
    if (n === null || n === undefined || isNaN(n)) return "\u2013";
    if (n < 1e6) return fmtInt(n);
    var units = [[1e9, " G"], [1e6, " M"]];
    for (var i = 0; i < units.length; i++) {
      if (n >= units[i][0]) {
        var v = n / units[i][0];
        return (v >= 100 ? Math.round(v) : v.toFixed(v >= 10 ? 1 : 2)) + units[i][1];
      }
    }
    return fmtInt(n);
  }
  function fmtRate(n) {
    if (n === null || n === undefined || isNaN(n)) return "\u2013";
    if (n >= 100) return Math.round(n).toLocaleString("en-US");
    if (n >= 10) return n.toFixed(1);
    return n.toFixed(2);
  }
  function fmtMs(v) {
    if (v === null || v === undefined || isNaN(v)) return "\u2013";
    if (v < 1) return Math.round(v * 1000) + " \u00b5s";
    if (v < 10) return v.toFixed(2) + " ms";
    if (v < 1000) return Math.round(v) + " ms";
    return (v / 1000).toFixed(2) + " s";
  }
  function fmtBytes(n) {
    if (n === null || n === undefined || isNaN(n)) return "\u2013";
    var units = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? Math.round(n) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
  }
  function fmtDuration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "\u2013";
    var s = Math.floor(ms / 1000);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    s = s % 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + (m < 10 ? "0" : "") + m + "m";
    if (m > 0) return m + "m " + (s < 10 ? "0" : "") + s + "s";
    return s + "s";
  }
  function fmtAgo(ms) {
    if (ms === null || ms === undefined) return "\u2013";
    if (ms < 1000) return "now";
    return fmtDuration(ms) + " ago";
  }
  function last(a) { return a && a.length ? a[a.length - 1] : null; }

  // A sparkline: a line over an area, scaled to the series' own maximum; null is a gap.
  function drawSpark(svg, values, w, h) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    values = values || [];
    var max = 0;
    for (var i = 0; i < values.length; i++) if (values[i] !== null && values[i] > max) max = values[i];
    var n = Math.max(values.length, 2);
    var step = w / (n - 1);
    var line = "", area = "", open = false, startX = 0, prevX = 0;
    for (var j = 0; j < values.length; j++) {
      var v = values[j];
      var x = (j + (n - values.length)) * step;
      if (v === null) {
        if (open) { area += "L" + prevX.toFixed(1) + " " + h + "L" + startX.toFixed(1) + " " + h + "Z"; open = false; }
        continue;
      }
      var y = max > 0 ? h - 1 - (v / max) * (h - 3) : h - 1;
      var p = x.toFixed(1) + " " + y.toFixed(1);
      if (!open) { line += "M" + p; area += "M" + x.toFixed(1) + " " + h + "L" + p; startX = x; open = true; }
      else { line += "L" + p; area += "L" + p; }
      prevX = x;
    }
    if (open) area += "L" + prevX.toFixed(1) + " " + h + "Z";
    var a = document.createElementNS(SVG, "path");
    a.setAttribute("class", "area");
    a.setAttribute("d", area || "M0 0");
    var l = document.createElementNS(SVG, "path");
    l.setAttribute("class", "line");
    l.setAttribute("d", line || "M0 " + (h - 1) + "L" + w + " " + (h - 1));
    svg.appendChild(a);
    svg.appendChild(l);
    svg.setAttribute("data-points", String(values.length));
    svg.setAttribute("data-max", String(max));
  }
  function spark(cls, caption, values, lastText) {
    var fig = el("figure");
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 100 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", cls);
    var t = document.createElementNS(SVG, "title");
    t.textContent = caption + ", last 5 minutes; now " + lastText;
    drawSpark(svg, values, 100, 24);
    svg.appendChild(t);
    fig.appendChild(svg);
    fig.appendChild(el("figcaption", null, caption + " " + lastText));
    return fig;
  }
  // A bar of busy slots followed by "busy / total", as one element.
  function slotsValue(busy, total) {
    var box = el("span");
    var m = el("span", "meter");
    var i = el("i");
    i.style.width = (total > 0 ? Math.min(100, 100 * busy / total) : 0) + "%";
    m.appendChild(i);
    box.appendChild(m);
    box.appendChild(document.createTextNode(busy + " / " + total));
    return box;
  }
  function replaceBody(table, rows, emptyText, cols) {
    var tbody = table.tBodies[0];
    var fresh = document.createElement("tbody");
    if (rows.length === 0) {
      var tr = el("tr");
      var td = el("td", "empty", emptyText);
      td.colSpan = cols;
      tr.appendChild(td);
      fresh.appendChild(tr);
    }
    for (var i = 0; i < rows.length; i++) fresh.appendChild(rows[i]);
    table.replaceChild(fresh, tbody);
  }

  var OUTCOMES = ["ok", "error", "timeout", "overloaded", "no_service", "worker_lost", "shutting_down", "cancelled"];

  function failedOf(outcomes) {
    var failed = 0;
    for (var k in outcomes) if (k !== "ok") failed += outcomes[k];
    return failed;
  }
  function twoMs(a, b, fieldA, fieldB) {
    var box = el("span");
    var x = el("span", null, fmtMs(a));
    x.setAttribute("data-field", fieldA);
    var y = el("span", null, fmtMs(b));
    y.setAttribute("data-field", fieldB);
    box.appendChild(x);
    box.appendChild(document.createTextNode(" / "));
    box.appendChild(y);
    return box;
  }

  function renderServices(s) {
    var rows = [];
    for (var i = 0; i < s.services.length; i++) {
      var v = s.services[i];
      var failed = failedOf(v.outcomes);
      var tr = el("tr");
      tr.setAttribute("data-service", v.name);
      var name = cell(tr, "Service", "", "name");
      var nm = el("span", null, show(v.name));
      nm.setAttribute("data-field", "name");
      name.appendChild(nm);
      if (v.version || v.description) {
        var sub = el("small", "sub", (v.version ? "v" + show(v.version) : "") +
          (v.version && v.description ? " \u00b7 " : "") + (v.description ? show(v.description) : ""));
        sub.setAttribute("data-field", "description");
        name.appendChild(sub);
      }
      var q = cell(tr, "Queue", fmtInt(v.queued), "n" + (v.queued > 0 ? " warn" : ""), "queued");
      if (v.maxQueue !== undefined) q.title = "at most " + fmtInt(v.maxQueue) + " queued";
      cell(tr, "Jobs/s", fmtRate(v.rate), "n", "rate");
      cell(tr, "Wait p50 / p99", "", "n").appendChild(twoMs(v.queueWaitMs.p50, v.queueWaitMs.p99, "waitP50", "waitP99"));
      cell(tr, "Run p50 / p99", "", "n").appendChild(twoMs(v.serviceMs.p50, v.serviceMs.p99, "runP50", "runP99"));
      // Its own jobs among its workers' slots, which their other services share.
      var slots = cell(tr, "Slots busy", "", "n", "slots");
      slots.appendChild(slotsValue(v.busy, v.slots));
      var others = (v.providersBusy === undefined ? v.busy : v.providersBusy) - v.busy;
      slots.title = fmtInt(v.busy) + " of " + show(v.name) + "'s jobs run in its workers' " +
        fmtInt(v.slots) + " slots; " + fmtInt(others) + " busy with other services";
      if (others > 0) slots.appendChild(el("span", "more", "+" + fmtInt(others)));
      cell(tr, "Workers", fmtInt(v.providers), "n" + (v.providers === 0 ? " bad" : ""), "providers");
      cell(tr, "OK", fmtCount(v.outcomes.ok), "n", "ok").title = fmtInt(v.outcomes.ok);
      var f = cell(tr, "Failed", fmtCount(failed), "n" + (failed > 0 ? " bad" : ""), "failed");
      f.title = fmtInt(failed) + ": " + breakdown(v.outcomes);
      var trend = cell(tr, "Trend", "", "sparkcell", "trend");
      var box = el("div", "sparks");
      var ser = v.series || {};
      box.appendChild(spark("rate", "jobs/s", ser.rate, fmtRate(last(ser.rate))));
      box.appendChild(spark("queue", "queue", ser.queued, fmtInt(last(ser.queued))));
      box.appendChild(spark("wait", "p99 wait", ser.waitP99Ms, fmtMs(last(ser.waitP99Ms))));
      trend.appendChild(box);
      rows.push(tr);
    }
    var u = s.unknownServices;
    if (u) {
      // Jobs for names no worker serves (mistyped paths): one row, not one per name.
      var ur = el("tr");
      ur.setAttribute("data-unknown", "");
      var un = cell(ur, "Service", "", "name muted");
      var unm = el("span", null, "unknown services");
      unm.setAttribute("data-field", "name");
      un.appendChild(unm);
      var names = u.names.map(function (n) { return show(n.name) + " " + fmtInt(n.jobs); }).join(", ") +
        (u.more > 0 ? " and " + fmtInt(u.more) + " more" : "");
      var sub2 = el("small", "sub", names);
      sub2.setAttribute("data-field", "names");
      un.appendChild(sub2);
      for (var c = 0; c < 6; c++) cell(ur, "", "\u2013", "n muted");
      cell(ur, "OK", fmtCount(u.outcomes.ok), "n", "ok").title = fmtInt(u.outcomes.ok);
      var uf = failedOf(u.outcomes);
      var ufc = cell(ur, "Failed", fmtCount(uf), "n" + (uf > 0 ? " bad" : ""), "failed");
      ufc.title = fmtInt(uf) + ": " + breakdown(u.outcomes);
      cell(ur, "Trend", "", "sparkcell");
      rows.push(ur);
    }
    replaceBody($("#services"), rows, "No services yet", 10);
  }

  function breakdown(outcomes) {
    var parts = [];
    for (var i = 0; i < OUTCOMES.length; i++) {
      var k = OUTCOMES[i];
      if (k !== "ok" && outcomes[k] > 0) parts.push(k + " " + fmtInt(outcomes[k]));
    }
    return parts.join(", ") || "none failed";
  }

  function renderOutcomes(s) {
    var rows = [];
    var list = s.services.slice();
    if (s.unknownServices) list.push({ name: "unknown services", outcomes: s.unknownServices.outcomes });
    for (var i = 0; i < list.length; i++) {
      var v = list[i];
      var tr = el("tr");
      tr.setAttribute("data-service", v.name);
      cell(tr, "Service", show(v.name), "name");
      for (var j = 0; j < OUTCOMES.length; j++) {
        var k = OUTCOMES[j];
        var n = v.outcomes[k] || 0;
        cell(tr, k, fmtInt(n), "n" + (k !== "ok" && n > 0 ? " bad" : ""), k);
      }
      rows.push(tr);
    }
    replaceBody($("#outcomes"), rows, "No jobs yet", 9);
  }

  function renderErrors(s) {
    var rows = [];
    var errors = s.errors || [];
    for (var i = 0; i < errors.length; i++) {
      var e = errors[i];
      var tr = el("tr");
      tr.setAttribute("data-error", String(i));
      cell(tr, "Time", new Date(e.at).toLocaleTimeString(), "n", "at");
      cell(tr, "Service", show(e.service), null, "service");
      cell(tr, "Error", show(e.kind), "bad", "kind");
      cell(tr, "Request id", e.requestId === null ? "\u2013" : show(e.requestId), null, "requestId");
      cell(tr, "Worker", e.worker === null ? "\u2013" : show(e.worker.replace(/^worker /, "")), "muted", "worker");
      cell(tr, "Message", show(e.message) + (e.detail ? " \u2014 " + show(e.detail) : ""), "msg wide", "message");
      rows.push(tr);
    }
    replaceBody($("#errors"), rows, "No errors", 6);
  }

  function historyText(h, now) {
    var parts = [];
    for (var i = h.length - 1; i >= 0 && parts.length < 4; i--) {
      parts.push(show(h[i].state) + " " + fmtAgo(now - h[i].at));
    }
    return parts.join(" \u2190 ");
  }

  function button(action, label, enabled, onClick) {
    var b = el("button", null, label);
    b.type = "button";
    b.setAttribute("data-action", action);
    b.disabled = !enabled;
    b.addEventListener("click", onClick);
    return b;
  }

  function renderWorkers(s) {
    var rows = [];
    for (var i = 0; i < s.providers.length; i++) {
      var p = s.providers[i];
      var tr = el("tr");
      tr.setAttribute("data-worker", p.name);
      cell(tr, "Worker", show(p.kind === "local" ? p.name : (p.label || p.address)), "name", "name");
      cell(tr, "Address", show(p.address), "muted wide", "address");
      cell(tr, "Services", p.services.map(show).join(", "), "wide", "services");
      cell(tr, "Slots busy", "", "n", "slots").appendChild(slotsValue(p.busy, p.slots));
      var jobs = p.jobs || { ok: 0, failed: 0 };
      cell(tr, "OK", fmtInt(jobs.ok), "n", "ok");
      cell(tr, "Failed", fmtInt(jobs.failed), "n" + (jobs.failed > 0 ? " bad" : ""), "failed");
      var le = p.lastError;
      var lec = cell(tr, "Last error", le ? show(le.kind) + " " + (le.requestId === null ? "" : show(le.requestId)) : "\u2013", le ? "bad" : "muted", "lastError");
      if (le) lec.title = show(le.message) + " \u00b7 " + new Date(le.at).toLocaleTimeString();
      cell(tr, "Last heard", p.kind === "local" ? "in process" : fmtAgo(p.lastSeenMsAgo), "n", "lastSeen");
      cell(tr, "Connected", p.connectedMsAgo === null ? "\u2013" : fmtDuration(p.connectedMsAgo), "n", "connected");
      var st = cell(tr, "State", "", null);
      var pill = el("span", "pill " + p.state, p.state);
      pill.setAttribute("data-field", "state");
      st.appendChild(pill);
      if (p.history && p.history.length) {
        var hist = el("small", "sub", historyText(p.history, s.now));
        hist.setAttribute("data-field", "history");
        st.appendChild(hist);
      }
      var acts = cell(tr, "Actions", "", "actions");
      (function (name, state) {
        acts.appendChild(button("drain", "Drain", state === "ready", function () { act("drain", { worker: name }); }));
        acts.appendChild(document.createTextNode(" "));
        acts.appendChild(button("disable", "Disable", state === "ready" || state === "draining" || state === "drained", function () { act("disable", { worker: name }); }));
        acts.appendChild(document.createTextNode(" "));
        acts.appendChild(button("enable", "Enable", state !== "ready", function () { act("enable", { worker: name }); }));
      })(p.name, p.state);
      rows.push(tr);
    }
    replaceBody($("#workers"), rows, "No workers attached", 11);
  }

  function fmtLimitMs(v) { return v === undefined || v === null ? "\u2013" : (v >= 1000 && v % 1000 === 0 ? fmtInt(v / 1000) + " s" : fmtInt(v) + " ms"); }

  function renderLimits(s) {
    var dl = $("#limits-list");
    var l = s.limits;
    var items = [];
    if (l && l.balancer) {
      var b = l.balancer;
      items.push(["maxQueue", "Max queue per service", fmtInt(b.maxQueue)]);
      items.push(["defaultTimeoutMs", "Default job deadline", fmtLimitMs(b.defaultTimeoutMs)]);
      items.push(["retries", "Redeliveries of a lost worker's job", fmtInt(b.retries)]);
      items.push(["serviceGraceMs", "Wait for a worker known to come", fmtLimitMs(b.serviceGraceMs)]);
      items.push(["cancelGraceMs", "Cancel grace (then cut off)", fmtLimitMs(b.cancelGraceMs)]);
      items.push(["maxPendingServices", "Unknown services waited for", fmtInt(b.maxPendingServices)]);
      items.push(["prefetchDepth", "Prefetch from queue depth per worker", String(b.prefetchDepth)]);
      items.push(["prefetchBudgetMs", "Prefetch budget", fmtLimitMs(b.prefetchBudgetMs)]);
    }
    if (l && l.server) {
      var v = l.server;
      items.push(["maxConnections", "Connections", fmtInt(v.maxConnections)]);
      items.push(["prefetch", "Worker prefetch (WELCOME)", fmtInt(v.prefetch)]);
      items.push(["epMaxPayload", "EP frame payload", fmtBytes(v.epMaxPayload)]);
      items.push(["epMaxInFlight", "EP jobs in flight per connection", fmtInt(v.epMaxInFlight)]);
      items.push(["httpMaxBodyBytes", "HTTP body", fmtBytes(v.http.maxBodyBytes)]);
      items.push(["httpMaxHeaderBytes", "HTTP header section", fmtBytes(v.http.maxHeaderBytes)]);
      items.push(["httpMaxHeaderCount", "HTTP header fields", fmtInt(v.http.maxHeaderCount)]);
      items.push(["httpMaxRequestLine", "HTTP request line", fmtBytes(v.http.maxRequestLine)]);
    }
    while (dl.firstChild) dl.removeChild(dl.firstChild);
    for (var i = 0; i < items.length; i++) {
      dl.appendChild(el("dt", null, items[i][1]));
      var dd = el("dd", null, items[i][2]);
      dd.setAttribute("data-limit", items[i][0]);
      dl.appendChild(dd);
    }
  }

  // Rows kept from poll to poll: a value being typed is not redrawn away.
  var queueRows = {};
  function renderQueues(s) {
    var tbody = $("#queues").tBodies[0];
    var seen = {};
    for (var i = 0; i < s.services.length; i++) {
      var v = s.services[i];
      seen[v.name] = true;
      var row = queueRows[v.name];
      if (!row) {
        row = el("tr");
        row.setAttribute("data-service", v.name);
        cell(row, "Service", show(v.name), "name");
        cell(row, "Queued", "", "n", "queued");
        cell(row, "Max queue", "", "n", "maxQueue");
        var td = cell(row, "Set", "", "actions");
        var input = el("input", "num");
        input.type = "number";
        input.min = "0";
        input.placeholder = "max queue";
        td.appendChild(input);
        td.appendChild(document.createTextNode(" "));
        (function (name, input) {
          td.appendChild(button("set", "Set", true, function () {
            var text = input.value.trim();
            act("set", { service: name, key: "max_queue", value: text === "" ? null : Number(text) });
          }));
          td.appendChild(document.createTextNode(" "));
          td.appendChild(button("default", "Default", true, function () {
            act("set", { service: name, key: "max_queue", value: null });
          }));
        })(v.name, input);
        queueRows[v.name] = row;
        tbody.appendChild(row);
      }
      text(row.querySelector('[data-field="queued"]'), fmtInt(v.queued));
      text(row.querySelector('[data-field="maxQueue"]'), v.maxQueue === undefined ? "\u2013" : fmtInt(v.maxQueue));
    }
    for (var name in queueRows) {
      if (!seen[name]) {
        tbody.removeChild(queueRows[name]);
        delete queueRows[name];
      }
    }
  }

  // An admin action: POST admin/<op> with a JSON body (and the page's token); the answer or
  // the refusal is shown in #notice until the next action.
  function act(op, body) {
    var h = { "content-type": "application/json" };
    if (token) h.Authorization = "Bearer " + token;
    fetch("admin/" + op, { method: "POST", headers: h, body: JSON.stringify(body), cache: "no-store" })
      .then(function (r) {
        return r.text().then(function (t) {
          if (!r.ok) throw new Error(r.status + ": " + t.trim());
          return JSON.parse(t);
        });
      })
      .then(function (res) {
        var what = res.worker ? (res.worker.label || res.worker.name) + ": " + res.worker.state
          : res.service ? res.service + ": max_queue " + fmtInt(res.value) : op + ": done";
        notice(true, show(what));
      })
      .catch(function (e) { notice(false, "Action failed: " + show(e.message)); });
  }

  function notice(ok, message) {
    var n = $("#notice");
    n.className = "on " + (ok ? "good" : "bad");
    text(n, message);
  }

  function ringPct(r) { return r.capacity > 0 ? (100 * r.usedBytes / r.capacity).toFixed(1) + " %" : "\u2013"; }

  function renderThreads(s) {
    var card = $("#threads-card");
    if (!s.pool) { card.hidden = true; return; }
    card.hidden = false;
    var rows = [];
    for (var i = 0; i < s.pool.threads.length; i++) {
      var t = s.pool.threads[i];
      var tr = el("tr");
      tr.setAttribute("data-thread", String(t.thread));
      cell(tr, "Thread", "#" + t.thread, "name", "thread");
      var st = cell(tr, "State", "", null, "state");
      st.appendChild(el("span", "pill " + t.status, t.status));
      cell(tr, "In flight", fmtInt(t.jobsInFlight), "n", "inFlight");
      cell(tr, "Done", fmtInt(t.jobsDone), "n", "done");
      cell(tr, "Restarts", fmtInt(t.restarts), "n" + (t.restarts > 0 ? " warn" : ""), "restarts");
      cell(tr, "Job ring", ringPct(t.jobRing), "n", "jobRing");
      cell(tr, "Reply ring", ringPct(t.replyRing), "n", "replyRing");
      cell(tr, "Wake-ups", fmtInt(t.jobRing.dataWakeups + t.replyRing.dataWakeups), "n", "wakeups");
      rows.push(tr);
    }
    replaceBody($("#threads"), rows, "No threads", 8);
    renderScaling(s);
  }

  // The thread count and its last changes, when the pool grows and shrinks.
  function renderScaling(s) {
    var p = $("#threads-scale");
    var sc = s.pool.scaling;
    if (!sc || sc.up + sc.down === 0) { p.hidden = true; return; }
    p.hidden = false;
    while (p.firstChild) p.removeChild(p.firstChild);
    // Slots scale on fixed threads (slotLimit), or threads scale.
    var slots = typeof sc.slots === "number";
    var head = el("span", null, slots
      ? sc.slots + (sc.slots === 1 ? " slot" : " slots") + " on " + sc.threads + (sc.threads === 1 ? " thread" : " threads") +
        " \u00b7 " + sc.up + " added, " + sc.down + " taken back"
      : sc.threads + (sc.threads === 1 ? " thread" : " threads") + (sc.starting ? " (+" + sc.starting + " starting)" : "") +
        " \u00b7 " + sc.up + " added, " + sc.down + " retired");
    head.setAttribute("data-scale", "threads");
    p.appendChild(head);
    var changes = sc.changes.slice(-5).reverse();
    for (var i = 0; i < changes.length; i++) {
      var c = changes[i];
      var line = el("span", null, (c.direction === "up" ? "\u2191 " : "\u2193 ") +
        (typeof c.slots === "number" ? c.slots + " slots" : c.threads) + " " +
        fmtAgo(s.now - c.at) + (c.reason ? ": " + c.reason : ""));
      line.setAttribute("data-scale", "change");
      p.appendChild(el("br"));
      p.appendChild(line);
    }
  }

  function renderFooter(s) {
    var f = $("#footer");
    while (f.firstChild) f.removeChild(f.firstChild);
    function item(label, value, key) {
      var span = el("span", null, label + " ");
      var b = el("b", "num", value);
      b.setAttribute("data-total", key);
      span.appendChild(b);
      f.appendChild(span);
    }
    if (s.server) {
      item("HTTP connections", fmtInt(s.server.connections.http), "httpConnections");
      item("EP connections", fmtInt(s.server.connections.ep), "epConnections");
      var rej = s.server.sniffRejected;
      item("sniff refused", fmtInt(rej.tls + rej.h2 + rej.unknown + rej.timeout), "sniffRejected");
      item("HTTP requests", fmtInt(s.server.http.requests), "httpRequests");
      item("bytes in", fmtBytes(s.server.transport.bytesIn), "bytesInTotal");
      item("bytes out", fmtBytes(s.server.transport.bytesOut), "bytesOutTotal");
    }
    if (s.lua) {
      item("Lua errors", fmtInt(s.lua.errors), "luaErrors");
      item("Lua interrupts", fmtInt(s.lua.interrupts), "luaInterrupts");
    }
    item("updated", new Date(s.now).toLocaleTimeString(), "updated");
  }

  function setTotal(key, value) {
    var nodes = $all('[data-total="' + key + '"]');
    for (var i = 0; i < nodes.length; i++) text(nodes[i], value);
  }

  function render(s) {
    var t = s.totals;
    text($("#where"), location.host);
    text($("#version"), s.version ? "v" + show(s.version) : "");
    setTotal("uptime", fmtDuration(s.uptimeMs));
    setTotal("rate", fmtRate(t.rate));
    setTotal("queued", fmtInt(t.queued));
    setTotal("busy", fmtInt(t.busy) + " / " + fmtInt(t.slots));
    setTotal("jobs", fmtInt(t.jobs));
    setTotal("ok", fmtInt(t.ok));
    setTotal("failed", fmtInt(t.failed));
    setTotal("providers", fmtInt(t.providers));
    setTotal("redelivered", fmtInt(t.redelivered));
    var ser = s.series || {};
    setTotal("bytesIn", fmtBytes(last(ser.bytesIn)));
    setTotal("bytesOut", fmtBytes(last(ser.bytesOut)));
    setTotal("open", s.server ? fmtInt(s.server.open) : "\u2013");
    drawSpark($("#spark-rate"), ser.rate, 100, 28);
    drawSpark($("#spark-queued"), ser.queued, 100, 28);
    drawSpark($("#spark-busy"), ser.busy, 100, 28);
    renderServices(s);
    renderWorkers(s);
    renderOutcomes(s);
    renderErrors(s);
    renderLimits(s);
    renderQueues(s);
    renderThreads(s);
    renderFooter(s);
    document.title = "ep \u00b7 " + location.host + (s.ready ? "" : " (starting)");
  }

  function setLive(ok, message) {
    var live = $("#live");
    live.className = ok ? "ok" : "stale";
    text(live, ok ? "live" : "stale");
    var err = $("#error");
    err.className = ok ? "" : "on";
    text(err, ok ? "" : message);
  }

  function poll() {
    fetch("stats", { headers: headers, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) {
          return r.text().then(function (body) { throw new Error(r.status + ": " + body.trim()); });
        }
        return r.json();
      })
      .then(function (s) {
        render(s);
        updates++;
        lastOk = Date.now();
        document.body.setAttribute("data-updates", String(updates));
        setLive(true, "");
      })
      .catch(function (e) {
        var age = lastOk ? " (last update " + fmtAgo(Date.now() - lastOk) + ")" : "";
        setLive(false, "Cannot read /_ep/stats: " + show(e.message) + age);
      })
      .then(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
</script>
</body>
</html>
`;
