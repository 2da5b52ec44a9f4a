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
 * browser test reads: `tr[data-service]`, `tr[data-worker]`, `[data-field]`,
 * `[data-total]`, and `body[data-updates]` (successful polls).
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
td.name { font-weight: 600; word-break: break-all; }
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
.sparks { display: flex; gap: .5rem; }
.sparks figure { margin: 0; }
.sparks figcaption { font-size: .7rem; color: var(--muted); text-align: left; white-space: nowrap; }
.sparks svg { display: block; width: 96px; height: 24px; }
svg .line { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
svg .area { fill: var(--accent-soft); stroke: none; }
svg.queue .line { stroke: var(--warn); } svg.queue .area { fill: rgba(217,119,6,.15); }
svg.wait .line { stroke: var(--good); } svg.wait .area { fill: rgba(22,163,74,.13); }
footer { color: var(--muted); font-size: .8rem; display: flex; flex-wrap: wrap; gap: .35rem 1.25rem; }
#error { display: none; margin-bottom: 1rem; padding: .6rem .9rem; border-radius: 8px;
  background: rgba(209,52,47,.12); color: var(--bad); }
#error.on { display: block; }
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
        <th>Service</th><th class="n">Queue</th><th class="n">Jobs/s</th><th class="n">Wait p50</th>
        <th class="n">Wait p99</th><th class="n">Run p50</th><th class="n">Run p99</th>
        <th class="n">Slots busy</th><th class="n">Workers</th><th class="n">OK</th><th class="n">Failed</th>
        <th>Trend</th>
      </tr></thead>
      <tbody><tr><td class="empty" colspan="12">Loading&hellip;</td></tr></tbody>
    </table></div>
  </section>
  <section class="card">
    <h2>Workers <small>module workers and this process's handler threads</small></h2>
    <div class="scroll"><table id="workers" class="cards">
      <thead><tr>
        <th>Worker</th><th>Address</th><th>Services</th><th class="n">Slots busy</th>
        <th class="n">Last heard</th><th class="n">Connected</th><th>State</th>
      </tr></thead>
      <tbody><tr><td class="empty" colspan="7">Loading&hellip;</td></tr></tbody>
    </table></div>
  </section>
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

  function renderServices(s) {
    var rows = [];
    for (var i = 0; i < s.services.length; i++) {
      var v = s.services[i];
      var failed = 0;
      for (var k in v.outcomes) if (k !== "ok") failed += v.outcomes[k];
      var tr = el("tr");
      tr.setAttribute("data-service", v.name);
      cell(tr, "Service", show(v.name), "name", "name");
      cell(tr, "Queue", fmtInt(v.queued), "n" + (v.queued > 0 ? " warn" : ""), "queued");
      cell(tr, "Jobs/s", fmtRate(v.rate), "n", "rate");
      cell(tr, "Wait p50", fmtMs(v.queueWaitMs.p50), "n", "waitP50");
      cell(tr, "Wait p99", fmtMs(v.queueWaitMs.p99), "n", "waitP99");
      cell(tr, "Run p50", fmtMs(v.serviceMs.p50), "n", "runP50");
      cell(tr, "Run p99", fmtMs(v.serviceMs.p99), "n", "runP99");
      cell(tr, "Slots busy", "", "n", "slots").appendChild(slotsValue(v.busy, v.slots));
      cell(tr, "Workers", fmtInt(v.providers), "n" + (v.providers === 0 ? " bad" : ""), "providers");
      cell(tr, "OK", fmtInt(v.outcomes.ok), "n", "ok");
      cell(tr, "Failed", fmtInt(failed), "n" + (failed > 0 ? " bad" : ""), "failed");
      var trend = cell(tr, "Trend", "", "sparkcell", "trend");
      var box = el("div", "sparks");
      var ser = v.series || {};
      box.appendChild(spark("rate", "jobs/s", ser.rate, fmtRate(last(ser.rate))));
      box.appendChild(spark("queue", "queue", ser.queued, fmtInt(last(ser.queued))));
      box.appendChild(spark("wait", "p99 wait", ser.waitP99Ms, fmtMs(last(ser.waitP99Ms))));
      trend.appendChild(box);
      rows.push(tr);
    }
    replaceBody($("#services"), rows, "No services yet", 12);
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
      cell(tr, "Last heard", p.kind === "local" ? "in process" : fmtAgo(p.lastSeenMsAgo), "n", "lastSeen");
      cell(tr, "Connected", p.connectedMsAgo === null ? "\u2013" : fmtDuration(p.connectedMsAgo), "n", "connected");
      var st = cell(tr, "State", "", null, "state");
      st.appendChild(el("span", "pill " + p.state, p.state));
      rows.push(tr);
    }
    replaceBody($("#workers"), rows, "No workers attached", 7);
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
    var head = el("span", null, sc.threads + (sc.threads === 1 ? " thread" : " threads") + (sc.starting ? " (+" + sc.starting + " starting)" : "") +
      " \u00b7 " + sc.up + " added, " + sc.down + " retired");
    head.setAttribute("data-scale", "threads");
    p.appendChild(head);
    var changes = sc.changes.slice(-5).reverse();
    for (var i = 0; i < changes.length; i++) {
      var c = changes[i];
      var line = el("span", null, (c.direction === "up" ? "\u2191 " : "\u2193 ") + c.threads + " " +
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
