import assert from "node:assert/strict";
import { BucketHistogram, ExpositionWriter, SECONDS_BUCKETS } from "./prometheus.ts";
import { parseExposition, valueOf } from "../../tests/_prometheus_parser.ts";

Deno.test("BucketHistogram puts a value on a bound in that bound's bucket, NaN nowhere", () => {
  const h = new BucketHistogram([0.001, 0.01, 0.1]);
  for (const v of [0.0005, 0.001, 0.002, 0.01, 0.05, 1, NaN]) h.observe(v);
  assert.deepEqual([...h.counts], [2, 2, 1, 1]);
  assert.equal(h.count, 6);
  assert.ok(Math.abs(h.sum - 1.0635) < 1e-12);
  assert.throws(() => new BucketHistogram([1, 1]), RangeError);
  assert.ok(SECONDS_BUCKETS.every((b, i) => i === 0 || b > SECONDS_BUCKETS[i - 1]));
});

Deno.test("ExpositionWriter escapes label values and help, and refuses misuse", () => {
  const w = new ExpositionWriter();
  w.family("ep_x_total", "counter", 'Help with \\ and\nnewline and "quotes".');
  w.sample("ep_x_total", [["service", 'a"b\\c\nd']], 1);
  const h = new BucketHistogram([0.5, 1]);
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
