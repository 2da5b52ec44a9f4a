/**
 * Reports for `ep bench` and the head-to-head benchmark: a self-contained HTML page (inline
 * CSS and SVG, no script, no external URL) and the SVG plots it is made of — a latency
 * distribution (percentile spectrum) and a grouped bar chart — which the benchmark also
 * writes as standalone `.svg` files.
 *
 * @module
 */
import { fmtMs } from "./format.ts";
import { LatencyHistogram, type LatencyHistogramJson, percentiles } from "./latency_histogram.ts";

const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#7f7f7f",
  "#bcbd22",
];

/**
 * Escapes text for HTML and SVG.
 *
 * @example
 * ```ts
 * import { escapeXml } from "./report.ts";
 * console.assert(escapeXml("<a&b>") === "&lt;a&amp;b&gt;");
 * ```
 */
export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** Options for the SVG plots. */
export interface PlotOptions {
  /** Title drawn above the plot. */
  title?: string;
  /** Width in px. Default 760. */
  width?: number;
  /** Height in px. Default 420. */
  height?: number;
  /**
   * A standalone `.svg` file (with the SVG namespace declaration, which is a name, not a
   * fetched URL); false for SVG inlined in HTML, which needs none. Default false.
   */
  standalone?: boolean;
}

/** 1-2-5 ticks covering [lo, hi] (log scale). */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  let p = 10 ** Math.floor(Math.log10(lo));
  while (p <= hi * 1.0001) {
    for (const m of [1, 2, 5]) {
      const v = p * m;
      if (v >= lo * 0.9999 && v <= hi * 1.0001) out.push(v);
    }
    p *= 10;
  }
  return out;
}

function niceLog(lo: number, hi: number): [number, number] {
  const steps = [1, 2, 5];
  const down = (v: number) => {
    const p = 10 ** Math.floor(Math.log10(v));
    let best = p;
    for (const m of steps) if (p * m <= v) best = p * m;
    return best;
  };
  const up = (v: number) => {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [...steps, 10]) if (p * m >= v) return p * m;
    return p * 10;
  };
  return [down(lo), up(hi)];
}

function tickLabel(v: number): string {
  return v >= 1 ? String(Number(v.toPrecision(3))) : String(Number(v.toPrecision(2)));
}

/** The centred title line of a chart `w` wide. */
function svgTitle(w: number, title: string): string {
  return `<text x="${w / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`;
}

function svgOpen(w: number, h: number, standalone: boolean | undefined): string {
  const ns = standalone ? ` xmlns="http://www.w3.org/2000/svg"` : "";
  return `<svg${ns} viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" ` +
    `font-family="sans-serif" font-size="12">` +
    `<rect x="0" y="0" width="${w}" height="${h}" fill="#fff"/>`;
}

/** A series for {@linkcode latencyPlotSvg}: a name and its latencies in µs. */
export interface LatencySeries {
  /** Legend label. */
  name: string;
  /** Latencies, µs. */
  histogram: LatencyHistogram | LatencyHistogramJson;
}

/**
 * The latency distribution of one or more runs as an SVG percentile spectrum: latency
 * (ms, log scale) against percentile on a "nines" axis (50, 90, 99, 99.9, …), so the tail
 * gets as much room as the median.
 *
 * @example
 * ```ts
 * import { latencyPlotSvg } from "./report.ts";
 * import { LatencyHistogram } from "./latency_histogram.ts";
 * const h = new LatencyHistogram();
 * for (let i = 1; i <= 1000; i++) h.record(i * 10);
 * console.assert(latencyPlotSvg([{ name: "run", histogram: h }]).startsWith("<svg"));
 * ```
 */
export function latencyPlotSvg(series: LatencySeries[], options: PlotOptions = {}): string {
  const W = options.width ?? 800;
  const H = options.height ?? 420;
  const m = { l: 64, r: 190, t: options.title ? 36 : 16, b: 48 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const hs = series.map((s) => ({
    name: s.name,
    h: s.histogram instanceof LatencyHistogram
      ? s.histogram
      : LatencyHistogram.fromJSON(s.histogram),
  })).filter((s) => s.h.count > 0);
  const out: string[] = [svgOpen(W, H, options.standalone)];
  if (options.title) out.push(svgTitle(W, options.title));
  if (hs.length === 0) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no data</text></svg>`);
    return out.join("");
  }
  const maxCount = Math.max(...hs.map((s) => s.h.count));
  const nines = Math.max(2, Math.min(6, Math.ceil(Math.log10(maxCount))));
  const minMs = Math.max(0.001, Math.min(...hs.map((s) => s.h.min)) / 1000);
  const maxMs = Math.max(...hs.map((s) => s.h.max)) / 1000;
  const [lo, hi] = niceLog(minMs, Math.max(maxMs, minMs * 1.5));
  const x = (q: number) => {
    const v = q >= 1 ? nines : Math.min(nines, -Math.log10(1 - q));
    return m.l + (v / nines) * pw;
  };
  const y = (ms: number) =>
    m.t + ph - ((Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / Math.log10(hi / lo)) * ph;
  // Grid and axes.
  for (const t of logTicks(lo, hi)) {
    const yy = y(t).toFixed(1);
    out.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${yy}" y2="${yy}" stroke="#e5e5e5"/>`,
      `<text x="${m.l - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${
        tickLabel(t)
      }</text>`,
    );
  }
  for (let k = 0; k <= nines; k++) {
    const q = 1 - 10 ** -k;
    const xx = x(q).toFixed(1);
    const label = k === 0 ? "0" : k === 1 ? "90" : `99${k > 2 ? "." + "9".repeat(k - 2) : ""}`;
    out.push(
      `<line x1="${xx}" x2="${xx}" y1="${m.t}" y2="${m.t + ph}" stroke="#e5e5e5"/>`,
      `<text x="${xx}" y="${m.t + ph + 16}" text-anchor="middle">${label}</text>`,
    );
  }
  const x50 = x(0.5).toFixed(1);
  out.push(
    `<line x1="${x50}" x2="${x50}" y1="${m.t}" y2="${
      m.t + ph
    }" stroke="#e5e5e5" stroke-dasharray="3 3"/>`,
    `<text x="${x50}" y="${m.t + ph + 16}" text-anchor="middle">50</text>`,
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
    `<text x="${m.l + pw / 2}" y="${H - 10}" text-anchor="middle">percentile</text>`,
    `<text x="16" y="${m.t + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${
      m.t + ph / 2
    })">latency ms (log)</text>`,
  );
  // Series: a step line through (percentile, value) of every bucket.
  hs.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const n = s.h.count;
    let cum = 0;
    const pts: string[] = [];
    let prevX = x(0);
    // Steps narrower than a third of a pixel are merged: the plot looks the same and the
    // file stays small with thousands of buckets.
    let lastX = -1;
    let lastY = -1;
    const point = (px: number, py: number) => {
      if (Math.abs(px - lastX) < 0.34 && Math.abs(py - lastY) < 0.34) return;
      pts.push(`${px.toFixed(1)},${py.toFixed(1)}`);
      lastX = px;
      lastY = py;
    };
    for (const [v, c] of s.h.buckets()) {
      const yy = y(v / 1000);
      point(prevX, yy);
      cum += c;
      prevX = x(cum / n);
      point(prevX, yy);
    }
    if (pts.length > 0) pts.push(`${prevX.toFixed(1)},${y(s.h.max / 1000).toFixed(1)}`);
    const dash = s.name === "ideal" ? ` stroke-dasharray="6 4"` : "";
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="1.8"${dash} points="${
        pts.join(" ")
      }"/>`,
    );
    const ly = m.t + 14 + i * 18;
    out.push(
      `<line x1="${m.l + pw + 12}" x2="${
        m.l + pw + 34
      }" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash}/>`,
      `<text x="${m.l + pw + 40}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("");
}

/** A group of bars for {@linkcode barChartSvg}. */
export interface BarGroup {
  /** Group label (x axis). */
  group: string;
  /** One bar per series, in legend order. */
  values: { name: string; value: number }[];
}

/**
 * A grouped bar chart (log y axis by default), values written above the bars.
 *
 * @example
 * ```ts
 * import { barChartSvg } from "./report.ts";
 * const svg = barChartSvg([{ group: "a", values: [{ name: "x", value: 2 }, { name: "y", value: 5 }] }]);
 * console.assert(svg.includes("<rect"));
 * ```
 */
export function barChartSvg(
  groups: BarGroup[],
  options: PlotOptions & { yLabel?: string; logY?: boolean } = {},
): string {
  const W = options.width ?? 900;
  const H = options.height ?? 440;
  const m = { l: 64, r: 160, t: options.title ? 36 : 16, b: 56 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const out: string[] = [svgOpen(W, H, options.standalone)];
  if (options.title) out.push(svgTitle(W, options.title));
  const all = groups.flatMap((g) => g.values.map((v) => v.value)).filter((v) =>
    Number.isFinite(v) && v > 0
  );
  if (all.length === 0) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no data</text></svg>`);
    return out.join("");
  }
  const logY = options.logY ?? true;
  const [lo, hi] = logY ? niceLog(Math.min(...all) / 1.5, Math.max(...all) * 1.2) : [
    0,
    Math.max(...all) * 1.15,
  ];
  const y = (v: number) =>
    logY
      ? m.t + ph - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / Math.log10(hi / lo)) * ph
      : m.t + ph - (v / hi) * ph;
  const ticks = logY ? logTicks(lo, hi) : [0, hi / 4, hi / 2, (3 * hi) / 4, hi];
  for (const t of ticks) {
    const yy = y(t).toFixed(1);
    out.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${yy}" y2="${yy}" stroke="#e5e5e5"/>`,
      `<text x="${m.l - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${
        tickLabel(t)
      }</text>`,
    );
  }
  const names = [...new Set(groups.flatMap((g) => g.values.map((v) => v.name)))];
  const gw = pw / groups.length;
  const bw = (gw * 0.8) / Math.max(1, names.length);
  groups.forEach((g, gi) => {
    const gx = m.l + gi * gw + gw * 0.1;
    for (const v of g.values) {
      if (!Number.isFinite(v.value) || v.value <= 0) continue;
      const k = names.indexOf(v.name);
      const color = PALETTE[k % PALETTE.length];
      const bx = gx + k * bw;
      const top = y(v.value);
      const pattern = v.name === "ideal" ? ` fill-opacity="0.35" stroke="${color}"` : "";
      out.push(
        `<rect x="${bx.toFixed(1)}" y="${top.toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${
          (m.t + ph - top).toFixed(1)
        }" fill="${color}"${pattern}><title>${
          escapeXml(`${g.group}, ${v.name}: ${v.value}`)
        }</title></rect>`,
        `<text x="${(bx + bw / 2).toFixed(1)}" y="${
          (top - 3).toFixed(1)
        }" text-anchor="middle" font-size="9">${tickLabel(v.value)}</text>`,
      );
    }
    out.push(
      `<text x="${(m.l + gi * gw + gw / 2).toFixed(1)}" y="${m.t + ph + 18}" text-anchor="middle">${
        escapeXml(g.group)
      }</text>`,
    );
  });
  out.push(
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
    `<text x="16" y="${m.t + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${
      m.t + ph / 2
    })">${escapeXml(options.yLabel ?? "")}${logY ? " (log)" : ""}</text>`,
  );
  names.forEach((n, k) => {
    const ly = m.t + 10 + k * 18;
    const color = PALETTE[k % PALETTE.length];
    out.push(
      `<rect x="${m.l + pw + 12}" y="${ly - 6}" width="14" height="12" fill="${color}"${
        n === "ideal" ? ` fill-opacity="0.35" stroke="${color}"` : ""
      }/>`,
      `<text x="${m.l + pw + 32}" y="${ly}" dominant-baseline="middle">${escapeXml(n)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("");
}

/** One run in an HTML report. */
export interface ReportRun {
  /** Label. */
  name: string;
  /** Latencies, µs. */
  latency: LatencyHistogram | LatencyHistogramJson;
  /** Lines of details shown under the table (rate, errors, generator figures). */
  details?: string[];
}

/** What {@linkcode renderHtml} shows. */
export interface HtmlReport {
  /** Page title. */
  title: string;
  /** The command that produced it, shown verbatim. */
  command?: string;
  /** The runs (and, say, an `ideal` series). */
  runs: ReportRun[];
  /** Free text lines shown above the plot. */
  notes?: string[];
}

/**
 * A self-contained HTML page: a table of percentiles per run and the latency distribution
 * plot, inline CSS and SVG, no script and no external URL.
 *
 * @example
 * ```ts
 * import { renderHtml } from "./report.ts";
 * import { LatencyHistogram } from "./latency_histogram.ts";
 * const h = new LatencyHistogram();
 * h.record(1500);
 * const html = renderHtml({ title: "ep bench", runs: [{ name: "echo", latency: h }] });
 * console.assert(html.includes("<svg") && !html.includes("http"));
 * ```
 */
export function renderHtml(report: HtmlReport): string {
  const rows = report.runs.map((r) => {
    const h = r.latency instanceof LatencyHistogram
      ? r.latency
      : LatencyHistogram.fromJSON(r.latency);
    const p = percentiles(h);
    return `<tr><th>${escapeXml(r.name)}</th><td>${p.count}</td><td>${fmtMs(p.p50)}</td><td>${
      fmtMs(p.p90)
    }</td><td>${fmtMs(p.p99)}</td><td>${fmtMs(p.p999)}</td><td>${fmtMs(p.max)}</td></tr>`;
  }).join("\n");
  const details = report.runs.flatMap((r) =>
    (r.details ?? []).map((d) => `<li><b>${escapeXml(r.name)}</b>: ${escapeXml(d)}</li>`)
  ).join("\n");
  const notes = (report.notes ?? []).map((n) => `<p>${escapeXml(n)}</p>`).join("\n");
  const plot = latencyPlotSvg(
    report.runs.map((r) => ({ name: r.name, histogram: r.latency })),
    { title: "Latency distribution" },
  );
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeXml(report.title)}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child { text-align: left; }
code, pre { background: #f5f5f5; padding: 2px 4px; }
</style>
</head>
<body>
<h1>${escapeXml(report.title)}</h1>
${report.command ? `<pre>${escapeXml(report.command)}</pre>` : ""}
${notes}
<table>
<tr><th>run</th><th>requests</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>
${rows}
</table>
<ul>
${details}
</ul>
${plot}
<p>Latency is measured from each request's intended send time (open loop), so queueing in the
generator is not hidden. Percentiles: nearest rank, from a histogram with buckets under 0.8 % wide.</p>
</body>
</html>
`;
}
