import assert from "node:assert/strict";
import { ExpositionWriter, Histogram, QuantileWindow, SECONDS_BUCKETS, Series } from "./prometheus.ts";
import { parseExposition, valueOf } from "../../tests/_prometheus_parser.ts";

Deno.test("Histogram puts a value on a bound in that bound's bucket, NaN nowhere", () => {
  const h = new Histogram([0.001, 0.01, 0.1]);
  for (const v of [0.0005, 0.001, 0.002, 0.01, 0.05, 1, NaN]) h.observe(v);
  assert.deepEqual([...h.counts], [2, 2, 1, 1]);
  assert.equal(h.count, 6);
  assert.ok(Math.abs(h.sum - 1.0635) < 1e-12);
  assert.throws(() => new Histogram([1, 1]), RangeError);
  assert.ok(SECONDS_BUCKETS.every((b, i) => i === 0 || b > SECONDS_BUCKETS[i - 1]));
});

Deno.test("QuantileWindow is within 5 % and forgets values older than its window", () => {
  const w = new QuantileWindow(60);
  // 1..1000 ms: p50 ≈ 500 ms, p99 ≈ 990 ms.
  for (let i = 1; i <= 1000; i++) w.observe(i / 1000);
  const p50 = w.quantile(0.5);
  const p99 = w.quantile(0.99);
  assert.ok(Math.abs(p50 - 0.5) / 0.5 < 0.05, `p50 ${p50}`);
  assert.ok(Math.abs(p99 - 0.99) / 0.99 < 0.05, `p99 ${p99}`);
  // The second's own p99 comes back from tick, and the values stay in the window.
  const sec = w.tick(0.99);
  assert.ok(Math.abs(sec - 0.99) / 0.99 < 0.05, `second p99 ${sec}`);
  assert.equal(w.count, 1000);
  for (let t = 0; t < 59; t++) assert.ok(Number.isNaN(w.tick(0.5)));
  assert.equal(w.count, 1000, "still inside the minute");
  for (let t = 0; t < 6; t++) w.tick(0.5);
  assert.equal(w.count, 0, "a minute and more later it is gone");
  assert.ok(Number.isNaN(w.quantile(0.5)));
  // Extremes are clamped, not lost.
  w.observe(0);
  w.observe(1e6);
  assert.equal(w.count, 2);
  assert.ok(w.quantile(1) > 100);
});

Deno.test("Series keeps the newest samples in order and writes NaN as null", () => {
  const s = new Series(4);
  assert.ok(Number.isNaN(s.last));
  for (const v of [1, 2, NaN, 4, 5]) s.push(v);
  assert.deepEqual(s.toArray(), [2, null, 4, 5]);
  assert.equal(s.last, 5);
  assert.equal(s.size, 4);
  assert.equal(s.mean(3), 4.5, "NaN samples are skipped");
  assert.equal(new Series(2).toArray().length, 0);
});

Deno.test("ExpositionWriter escapes label values and help, and refuses misuse", () => {
  const w = new ExpositionWriter();
  w.family("ep_x_total", "counter", 'Help with \\ and\nnewline and "quotes".');
  w.sample("ep_x_total", [["service", 'a"b\\c\nd']], 1);
  const h = new Histogram([0.5, 1]);
  h.observe(0.25);
  h.observe(0.75);
  h.observe(2);
  w.family("ep_t_seconds", "histogram", "T.");
  w.histogram("ep_t_seconds", [["service", "s"]], h);
  const text = w.text();
  assert.ok(text.includes('ep_x_total{service="a\\"b\\\\c\\nd"} 1\n'), text);
  assert.ok(text.includes('# HELP ep_x_total Help with \\\\ and\\nnewline and "quotes".\n'));
  const families = parseExposition(text);
  assert.equal(families.get("ep_x_total")!.samples[0].labels.service, 'a"b\\c\nd');
  assert.equal(families.get("ep_x_total")!.help, 'Help with \\ and\nnewline and "quotes".');
  assert.equal(valueOf(families, "ep_t_seconds_bucket", { le: "0.5" }), 1);
  assert.equal(valueOf(families, "ep_t_seconds_bucket", { le: "1" }), 2);
  assert.equal(valueOf(families, "ep_t_seconds_bucket", { le: "+Inf" }), 3);
  assert.equal(valueOf(families, "ep_t_seconds_count"), 3);
  assert.equal(valueOf(families, "ep_t_seconds_sum"), 3);

  assert.throws(() => w.family("ep_x_total", "counter", "again"), TypeError);
  assert.throws(() => w.family("bad-name", "gauge", "x"), TypeError);
  assert.throws(() => w.sample("ep_x_total", [], 1), TypeError, "outside its family");
  w.family("ep_g", "gauge", "G.");
  assert.throws(() => w.sample("ep_g", [["bad-label", "x"]], 1), TypeError);
  assert.throws(() => w.sample("ep_g", [["__reserved", "x"]], 1), TypeError);
  assert.throws(() => w.histogram("ep_g", [], h), TypeError);
});
