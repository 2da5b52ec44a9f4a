/**
 * The demo services as TypeScript handlers for the handler-thread pool: `echo`, `json` and
 * `sleep`. (The same services exist in Lua under `scripts/services/`.)
 *
 * @module
 */
import { decodeMeta } from "./_meta.ts";
import type { HandlerRequest, HandlerResult } from "./pool.ts";

const dec = new TextDecoder();

function metaOf(req: HandlerRequest): Map<string, string> {
  return new Map(decodeMeta(req.meta));
}

/**
 * `echo`: the request body, or for GET the query string (URL-decoded).
 *
 * @example
 * ```ts
 * import { echo } from "./demo_services.ts";
 * const body = new TextEncoder().encode("hi");
 * console.assert(echo({ id: 1, service: "echo", meta: new Uint8Array(), body }) === body);
 * ```
 */
export function echo(req: HandlerRequest): HandlerResult {
  const meta = metaOf(req);
  const method = meta.get("ep-method");
  if (method === "GET" || method === "HEAD") {
    const q = meta.get("ep-query") ?? "";
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
 * const r = json({ id: 1, service: "json", meta: new Uint8Array(), body: new TextEncoder().encode("[1]") });
 * console.assert(typeof r === "object");
 * ```
 */
export function json(req: HandlerRequest): HandlerResult {
  let value: unknown = null;
  if (req.body.length > 0) {
    try {
      value = JSON.parse(dec.decode(req.body));
    } catch {
      return { status: 400, body: "Body is not valid JSON\n" };
    }
  }
  const kind = Array.isArray(value) ? "array" : value === null ? "null" : typeof value;
  return { status: 200, body: JSON.stringify({ received: value, type: kind }) };
}

/**
 * `sleep`: holds the job for `?ms=N` (or the body's number) milliseconds, precisely: a
 * timer for the bulk, then a short spin for the last millisecond.
 *
 * @example
 * ```ts ignore
 * import { sleep } from "./demo_services.ts";
 * await sleep({ id: 1, service: "sleep", meta: new Uint8Array(), body: new TextEncoder().encode("2") });
 * ```
 */
export async function sleep(req: HandlerRequest): Promise<HandlerResult> {
  const q = new URLSearchParams(metaOf(req).get("ep-query") ?? "");
  const ms = Math.max(0, Number(q.get("ms") ?? dec.decode(req.body)) || 0);
  const end = performance.now() + ms;
  if (ms > 1.5) await new Promise((r) => setTimeout(r, ms - 1.5));
  while (performance.now() < end) {
    // Yield to other jobs on this thread while more than 0.2 ms remain.
    if (end - performance.now() > 0.2) await new Promise((r) => setTimeout(r, 0));
  }
  return `slept ${ms}\n`;
}
