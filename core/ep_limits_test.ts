import assert from "node:assert/strict";
import { EpEncoder } from "../protocol/ep_encoder.ts";
import { MAX_META_ENTRIES } from "../protocol/ep_frames.ts";
import { mulberry32 } from "../tests/fuzz/_mutate.ts";
import { type Job, jobMeta } from "./job.ts";
import { encodeMeta } from "../protocol/ep_meta.ts";
import {
  httpMetaProblem,
  jobRingBytes,
  jobRingBytesBound,
  utf8Bytes,
  withoutReserved,
} from "./ep_limits.ts";

const utf8 = new TextEncoder();

/** A random string mixing ASCII, Latin-1, BMP, astral characters and lone surrogates. */
function randomString(rng: () => number, max: number): string {
  const n = Math.floor(rng() * max);
  let s = "";
  for (let i = 0; i < n; i++) {
    const r = rng();
    if (r < 0.5) s += String.fromCharCode(0x20 + Math.floor(rng() * 95));
    else if (r < 0.7) s += String.fromCharCode(0x80 + Math.floor(rng() * 0x80));
    else if (r < 0.85) s += String.fromCharCode(0x800 + Math.floor(rng() * 0xd000));
    else if (r < 0.95) s += String.fromCodePoint(0x10000 + Math.floor(rng() * 0xfffff));
    else s += String.fromCharCode(0xd800 + Math.floor(rng() * 0x800)); // lone surrogate
  }
  return s;
}

Deno.test("utf8Bytes equals the length TextEncoder writes, for random strings with every kind of character", () => {
  const rng = mulberry32(42);
  for (let i = 0; i < 2000; i++) {
    const s = randomString(rng, 40);
    assert.equal(utf8Bytes(s), utf8.encode(s).length, JSON.stringify(s));
  }
});

Deno.test("jobRingBytes is the size encodeMeta and the body take in a ring (redeliveries and hedged copies too); jobRingBytesBound never under it", () => {
  const rng = mulberry32(7);
  for (let i = 0; i < 500; i++) {
    const headers: [string, string][] = Array.from(
      { length: Math.floor(rng() * 5) },
      () => [randomString(rng, 10) || "k", randomString(rng, 30)],
    );
    const job: Job = {
      service: "s",
      protocol: rng() < 0.5 ? "http" : "ep",
      method: "GET",
      path: "/s/" + randomString(rng, 10),
      query: randomString(rng, 10),
      headers,
      body: new Uint8Array(Math.floor(rng() * 100)),
      deadlineMs: 0,
      priority: 0,
      remote: "",
      requestId: rng() < 0.5 ? undefined : (rng() < 0.5 ? "0123456789abcdef" : "x".repeat(64)),
    };
    const attempt = rng() < 0.5 ? 1 : 1 + Math.floor(rng() * 255);
    const hedge = rng() < 0.3;
    const meta = jobMeta(job, attempt, hedge);
    const exact = (meta.length > 0 ? encodeMeta(meta).length : 0) + job.body.length;
    assert.equal(jobRingBytes(job, attempt, hedge), exact);
    assert.ok(jobRingBytesBound(job) >= exact);
  }
});

Deno.test("httpMetaProblem refuses exactly what EP metadata cannot hold (431, 414 at the edges)", () => {
  const ok = (h: [string, string][], path = "/s", query = "") =>
    assert.equal(httpMetaProblem(path, query, h), null);
  const refused = (h: [string, string][], status: number, path = "/s", query = "") =>
    assert.equal(httpMetaProblem(path, query, h)?.status, status);
  ok([["k".repeat(255), "v"]]);
  refused([["k".repeat(256), "v"]], 431);
  ok([["k", "v".repeat(0xffff)]]);
  refused([["k", "v".repeat(0x10000)]], 431);
  // Latin-1 (obs-text) bytes of an HTTP value take 2 UTF-8 bytes each.
  ok([["k", "\xe9".repeat(0x7fff)]]);
  refused([["k", "\xe9".repeat(0x8000)]], 431);
  const fields = (n: number) =>
    Array.from({ length: n }, (_, i): [string, string] => [`f${i}`, ""]);
  // ep adds up to six keys (method, path, query, request id, attempt, hedge).
  ok(fields(MAX_META_ENTRIES - 6));
  refused(fields(MAX_META_ENTRIES - 5), 431);
  ok([], "/" + "p".repeat(0xfffe));
  refused([], 414, "/" + "p".repeat(0xffff));
  refused([], 414, "/s", "q".repeat(0x10000));
  // What it lets through, the encoder takes.
  const enc = new EpEncoder();
  const h: [string, string][] = [["k".repeat(255), "\xe9".repeat(0x7fff)], ...fields(249)];
  assert.equal(httpMetaProblem("/s", "", h), null);
  const job: Job = {
    service: "s",
    protocol: "http",
    method: "GET",
    path: "/s",
    query: "",
    headers: h,
    body: new Uint8Array(0),
    deadlineMs: 0,
    priority: 0,
    remote: "",
    requestId: "r".repeat(64),
  };
  // Every key ep adds: a hedged copy of a redelivery.
  enc.encode({
    type: "request",
    id: 1,
    deadlineMs: 1,
    priority: 0,
    attempt: 0,
    queueDepth: 0,
    service: "s",
    meta: jobMeta(job, 255, true),
    body: job.body,
  });
});

Deno.test("withoutReserved drops every ep- key in any case, keeps the rest in order, and allocates nothing without one", () => {
  const none: [string, string][] = [["a", "1"], ["epx", "2"], ["e-p", "3"]];
  assert.equal(withoutReserved(none), none);
  assert.deepEqual(
    withoutReserved([["ep-path", "/x"], ["a", "1"], ["EP-Method", "GET"], ["b", "2"], ["ep-", ""]]),
    [["a", "1"], ["b", "2"]],
  );
});
