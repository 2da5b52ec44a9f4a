import assert from "node:assert/strict";
import { barChartSvg, escapeXml, latencyPlotSvg, renderHtml } from "./report.ts";
import { LatencyHistogram } from "./latency_histogram.ts";

function hist(scale: number): LatencyHistogram {
  const h = new LatencyHistogram();
  for (let i = 1; i <= 5000; i++) h.record(i * scale);
  return h;
}

Deno.test("the latency plot draws one line per series, with a legend", () => {
  const svg = latencyPlotSvg([
    { name: "ep", histogram: hist(3) },
    { name: "nginx <rr>", histogram: hist(5).toJSON() },
    { name: "empty", histogram: new LatencyHistogram() },
  ], { title: "p & q" });
  assert.ok(svg.startsWith("<svg") && svg.endsWith("</svg>"));
  assert.equal(svg.match(/<polyline/g)?.length, 2);
  assert.ok(svg.includes("nginx &lt;rr&gt;"));
  assert.ok(svg.includes("p &amp; q"));
  assert.ok(!svg.includes("xmlns"), "inline SVG needs no namespace");
  assert.ok(
    latencyPlotSvg([], { standalone: true }).includes('xmlns="http://www.w3.org/2000/svg"'),
  );
  // Percentile axis labels up to the nines the data supports (5000 values: 99.99).
  for (const label of [">50<", ">90<", ">99<", ">99.9<", ">99.99<"]) assert.ok(svg.includes(label));
});

Deno.test("the bar chart draws a bar per finite positive value", () => {
  const svg = barChartSvg([
    { group: "a", values: [{ name: "x", value: 2 }, { name: "y", value: 50 }] },
    { group: "b", values: [{ name: "x", value: NaN }, { name: "y", value: 0.5 }] },
  ], { yLabel: "ms", standalone: true });
  assert.equal(svg.match(/<title>/g)?.length, 3); // each bar carries its value as a tooltip
  assert.ok(svg.includes("xmlns"));
});

Deno.test("the HTML report is self-contained: inline SVG, no script, no external URL", () => {
  const html = renderHtml({
    title: "ep bench <x>",
    command: "ep bench sleep --mix 1@0.9,20@0.1",
    runs: [{ name: "sleep", latency: hist(7), details: ["sent 5000"] }, {
      name: "ideal",
      latency: hist(6).toJSON(),
    }],
    notes: ["a note"],
  });
  assert.ok(html.startsWith("<!doctype html>"));
  assert.ok(html.includes("<svg"));
  assert.ok(!/https?:\/\//.test(html), "no URL");
  assert.ok(!/<script|<link|src=/.test(html));
  assert.ok(html.includes("ep bench &lt;x&gt;"));
  assert.equal(escapeXml(`"'&`), "&quot;'&amp;");
});
