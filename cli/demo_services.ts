/**
 * The demo services as TypeScript handlers for the handler-thread pool: `echo`, `json` and
 * `sleep`. (The same services exist in Lua under `scripts/services/`.)
 *
 * @module
 */
import type { EpRequest } from "../core/threads/ep_request.ts";
import type { HandlerResult } from "../core/threads/runtime.ts";

/**
 * `echo`: the request body, or for GET the query string (URL-decoded).
 *
 * @example
 * ```ts
 * import { echo } from "./demo_services.ts";
 * import { createRequest } from "../core/threads/ep_request.ts";
 * const body = new TextEncoder().encode("hi");
 * console.assert(echo(createRequest({ service: "echo", body })) === body);
 * console.assert(echo(createRequest({ service: "echo", method: "GET", query: "a+b%21" })) === "a b!");
 * ```
 */
export function echo(req: EpRequest): HandlerResult {
  const method = req.method;
  if (method === "GET" || method === "HEAD") {
    const q = req.query;
    try {
      return decodeURIComponent(q.replace(/\+/g, " "));
    } catch {
      return q;
    }
  }
  return req.body;
}

/**
 * `json`: parses a JSON body and answers with what it understood, or 400 for bad JSON.
 *
 * @example
 * ```ts
 * import { json } from "./demo_services.ts";
 * import { createRequest } from "../core/threads/ep_request.ts";
 * const r = json(createRequest({ service: "json", body: "[1]" }));
 * console.assert(typeof r === "object" && "status" in r && r.body === '{"received":[1],"type":"array"}');
 * ```
 */
export function json(req: EpRequest): HandlerResult {
  let value: unknown = null;
  if (req.body.length > 0) {
    try {
      value = req.json();
    } catch {
      return { status: 400, body: "Body is not valid JSON\n" };
    }
  }
  const kind = Array.isArray(value) ? "array" : value === null ? "null" : typeof value;
  return {
    status: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ received: value, type: kind }),
  };
}

/** How early the coarse `setTimeout` of {@linkcode sleep} aims before the end. */
const SLEEP_COARSE_LEAD_MS = 2.5;
/** Bounds of the spin at the end of a sleep, ms. */
const SLEEP_SPIN_MIN_MS = 0.02;
const SLEEP_SPIN_MAX_MS = 0.2;
let sleepCell: Int32Array | null = null;
/** How late `Atomics.wait` wakes on this thread, ms (moving average, one per thread). */
let waitLateMs = 0.08;

/**
 * Waits until `end` (`performance.now()` time) in `Atomics.wait`, woken early by how late
 * it usually wakes (learned on this thread), then spins the few microseconds left.
 */
function blockUntil(end: number): void {
  sleepCell ??= new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const lead = Math.min(SLEEP_SPIN_MAX_MS, Math.max(SLEEP_SPIN_MIN_MS, waitLateMs + 0.015));
    const now = performance.now();
    const wait = end - now - lead;
    if (wait <= 0) break;
    Atomics.wait(sleepCell, 0, 0, wait);
    const late = performance.now() - now - wait;
    waitLateMs += (Math.min(late, 0.5) - waitLateMs) / 8;
  }
  while (performance.now() < end) {
    // The last few microseconds.
  }
}

/**
 * `sleep`: holds the job for `?ms=N` (or the body's number) milliseconds, precisely and
 * without burning CPU, and reports the time it actually held the job, in microseconds, as
 * the reply header `x-slept-us` (EP: reply metadata).
 *
 * Deno's `setTimeout` fires 1–1.5 ms late, so it only does the bulk of a long sleep
 * (aimed 2.5 ms early, the thread stays free); the rest is waited in `Atomics.wait` (no
 * CPU), woken early by as much as it usually wakes late (≈ 0.08 ms, learned per thread),
 * and the last microseconds are spun (≤ 0.2 ms). Measured on an idle 2-core machine: the
 * job holds its slot 2–5 µs longer than asked (a plain `Atomics.wait` overshoots ≈ 70 µs,
 * `setTimeout` 1–1.5 ms). The thread is blocked for up to about 2.5 ms at the end of each
 * sleep: on a thread running several jobs at once, the others wait that long at most.
 *
 * @example
 * ```ts
 * import { sleep } from "./demo_services.ts";
 * import { createRequest } from "../core/threads/ep_request.ts";
 * const r = await sleep(createRequest({ service: "sleep", body: "2" }));
 * console.assert(typeof r === "object" && "headers" in r && r.body === "slept 2\n");
 * ```
 */
export function sleep(req: EpRequest): HandlerResult | Promise<HandlerResult> {
  const start = performance.now();
  const ms = Math.max(0, Number(req.searchParams.get("ms") ?? req.text()) || 0);
  const end = start + ms;
  const finish = (): HandlerResult => {
    blockUntil(end);
    const slept = Math.round((performance.now() - start) * 1000);
    return { body: `slept ${ms}\n`, headers: { "x-slept-us": String(slept) } };
  };
  if (ms <= SLEEP_COARSE_LEAD_MS + 0.5) return finish();
  return new Promise((resolve) => {
    setTimeout(() => resolve(finish()), ms - SLEEP_COARSE_LEAD_MS);
  });
}
