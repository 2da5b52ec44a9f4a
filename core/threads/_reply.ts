/**
 * Private: what a handler's result means as a reply, checked the same way wherever a handler
 * runs (a handler thread, or this thread for a map of functions): bytes, a string (UTF-8,
 * status 200), or `{ status, headers | meta, body }` whose status and body EP and HTTP can
 * carry. Anything else fails the job with a reason the client gets.
 *
 * @module
 */
import { encodeMeta } from "../../protocol/ep_meta.ts";
import { replyProblem } from "../job.ts";
import { InvalidReplyError } from "../errors.ts";
import type { FieldsInit, HandlerResult } from "./runtime.ts";

const EMPTY = new Uint8Array(0);

/**
 * A reply's parts, filled by {@linkcode ReplyParts.set}; one per thread, reused for every
 * reply (nothing allocated for a reply of bytes or a string).
 */
export class ReplyParts {
  status = 200;
  meta: Uint8Array | null = null;
  body: Uint8Array | string = EMPTY;

  /**
   * Reads a handler's result. Throws an {@linkcode InvalidReplyError} saying what is wrong
   * with it (the job then fails with that reason, which its client is told).
   */
  set(result: HandlerResult | undefined): void {
    if (result instanceof Uint8Array || typeof result === "string") {
      this.status = 200;
      this.meta = null;
      this.body = result;
      return;
    }
    if (result === null || typeof result !== "object") {
      throw new InvalidReplyError(
        `Handler returned neither bytes, a string nor { status, body }: "${String(result)}"`,
      );
    }
    const status = result.status ?? 200;
    const body = result.body ?? EMPTY;
    let meta = result.meta ?? null;
    if (!(body instanceof Uint8Array) && typeof body !== "string") {
      throw new InvalidReplyError(`Reply body must be a Uint8Array or a string: "${typeof body}"`);
    }
    if (meta !== null && !(meta instanceof Uint8Array)) {
      throw new InvalidReplyError(`Reply meta must be a Uint8Array: "${typeof meta}"`);
    }
    if (result.headers !== undefined && result.headers !== null) {
      if (meta !== null) throw new InvalidReplyError("Reply has both headers and meta; give one");
      try {
        meta = encodeReplyHeaders(result.headers);
      } catch (err) {
        if (!(err instanceof TypeError || err instanceof RangeError)) throw err;
        throw new InvalidReplyError(err.message, { cause: err });
      }
    }
    // The same rule on every path (TS and Lua handlers, all-in-one or remote worker): what
    // an EP REPLY and an HTTP response can carry.
    const problem = replyProblem(status, body.length);
    if (problem !== null) throw new InvalidReplyError(problem);
    this.status = status;
    this.meta = meta;
    this.body = body;
  }
}

/**
 * Encodes reply header fields as reply metadata (null when there are none); see
 * {@linkcode fieldPairs}.
 */
export function encodeReplyHeaders(headers: FieldsInit): Uint8Array | null {
  const pairs = fieldPairs(headers, "Reply header");
  return pairs.length === 0 ? null : encodeMeta(pairs);
}

/**
 * Header fields or metadata entries as `[name, value]` pairs: names lower-case, values
 * strings, in order (a record's repeated field in its list's order). Throws `TypeError`
 * for what is not a record or pairs, or a value that is not a string; `what` names them in
 * the message.
 */
export function fieldPairs(fields: FieldsInit, what: string): [string, string][] {
  const pairs: [string, string][] = [];
  const add = (name: unknown, value: unknown) => {
    if (typeof name !== "string" || typeof value !== "string") {
      throw new TypeError(`${what} values must be strings: "${String(name)}" is a ${typeof value}`);
    }
    pairs.push([name.toLowerCase(), value]);
  };
  if (typeof fields !== "object" || fields === null) {
    throw new TypeError(`${what}s must be a record or [name, value] pairs: "${fields}"`);
  }
  if (Symbol.iterator in fields) {
    for (const pair of fields as Iterable<readonly [string, string]>) {
      if (!Array.isArray(pair) || pair.length !== 2) {
        throw new TypeError(`${what} pairs must be [name, value]: "${String(pair)}"`);
      }
      add(pair[0], pair[1]);
    }
  } else {
    for (const [name, value] of Object.entries(fields)) {
      if (Array.isArray(value)) { for (const v of value) add(name, v); }
      else add(name, value);
    }
  }
  return pairs;
}
