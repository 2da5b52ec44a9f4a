/**
 * What a TypeScript handler is, and its second argument: {@linkcode Handler} takes an
 * `EpRequest` (`ep_request.ts`) and a {@linkcode HandlerContext}, whose `call` calls another
 * service the way a Lua handler's `ep.call` does: through this node's balancer when it
 * listens, else through the balancers it pulls from, or through a named upstream (another
 * cluster).
 *
 * @module
 */
import { ErrorCode } from "../../protocol/errors.ts";
import { JobError } from "../errors.ts";
import type { Reply } from "../net/client.ts";
import type { EpRequest } from "./ep_request.ts";
import { fieldPairs } from "./_reply.ts";
import type { FieldsInit, HandlerResult, ThreadCall, ThreadCallResult } from "./runtime.ts";

/**
 * Options of {@linkcode HandlerContext.call}.
 *
 * @example
 * ```ts
 * import type { CallOptions } from "./handler_context.ts";
 * const options: CallOptions = { timeoutMs: 500, upstream: "billing", meta: { "x-tenant": "beta" } };
 * console.assert(options.upstream === "billing");
 * ```
 */
export interface CallOptions {
  /**
   * Time the call has, in ms; absent (or Infinity): the balancer's default (30 s). Pass
   * `req.deadlineMs` to give it no more than the calling job has left: 0 or less rejects
   * `timeout` at once.
   */
  timeoutMs?: number;
  /** A named upstream (`NodeOptions.upstreams`): another cluster's balancers. */
  upstream?: string;
  /** Request metadata (lower-case names; `ep-…` entries are reserved and dropped). */
  meta?: FieldsInit;
}

/**
 * A handler's second argument: what it can do besides answering.
 *
 * @example A handler that asks another service and answers with what it said
 * ```ts
 * import type { HandlerContext } from "./handler_context.ts";
 * import { createRequest, type EpRequest } from "./ep_request.ts";
 * async function front(req: EpRequest, ctx: HandlerContext) {
 *   const user = await ctx.call("user", req.body, { timeoutMs: req.deadlineMs });
 *   return { status: user.status, body: user.body };
 * }
 * // A context whose `user` service answers "bob".
 * const ctx: HandlerContext = {
 *   call: (service) =>
 *     Promise.resolve({ status: 200, meta: [], body: new TextEncoder().encode(`${service}: bob`) }),
 * };
 * const reply = await front(createRequest({ service: "front", body: "7", deadlineMs: 500 }), ctx);
 * console.assert(new TextDecoder().decode(reply.body) === "user: bob");
 * ```
 */
export interface HandlerContext {
  /**
   * Calls a service and resolves with its reply, whatever its status (a 404 is a reply).
   * It goes through this node's balancer when the node listens, else through the
   * balancers it pulls from, or through `options.upstream`. Rejects with a `JobError`
   * (`kind` `no_service`, `timeout`, `overloaded`, …) when the call fails.
   */
  call(service: string, body?: Uint8Array | string, options?: CallOptions): Promise<Reply>;
}

/**
 * A TypeScript handler: the request and the context in; bytes, a string (UTF-8, status
 * 200) or `{ status, headers, body }` out, or a promise of one. A throw or a rejection
 * becomes an error reply (HTTP 500, EP `handler_error`) with the error's message.
 *
 * @example
 * ```ts
 * import type { Handler } from "./handler_context.ts";
 * import { createRequest } from "./ep_request.ts";
 * const created: Handler = (req) => ({ status: 201, headers: { location: req.path + "/1" } });
 * const reply = await created(createRequest({ service: "user", method: "POST" }), {
 *   call: () => Promise.reject(new Error("no calls here")),
 * });
 * console.assert(typeof reply === "object" && "status" in reply && reply.status === 201);
 * ```
 */
export type Handler = (
  req: EpRequest,
  ctx: HandlerContext,
) => HandlerResult | Promise<HandlerResult>;

/**
 * Handlers by service name: what a handler module exports, or the map of functions given
 * to a node.
 *
 * @example
 * ```ts
 * import type { Handlers } from "./handler_context.ts";
 * const services: Handlers = {
 *   echo: (req) => req.body,
 *   hello: () => "hello\n",
 * };
 * console.assert(Object.keys(services).length === 2);
 * ```
 */
export type Handlers = Readonly<Record<string, Handler>>;

const utf8 = new TextEncoder();

/**
 * The context a runtime hands its handlers, over the runtime context's `call` (absent: a
 * node that cannot call; calls reject `no_service`).
 *
 * @example
 * ```ts
 * import { handlerContext } from "./handler_context.ts";
 * const ctx = handlerContext((call, done) =>
 *   done({ ok: true, status: 200, meta: [], body: new TextEncoder().encode(call.service) })
 * );
 * const reply = await ctx.call("user", "7");
 * console.assert(new TextDecoder().decode(reply.body) === "user");
 * ```
 */
export function handlerContext(
  call: ((request: ThreadCall, done: (result: ThreadCallResult) => void) => void) | undefined,
): HandlerContext {
  return Object.freeze({
    call(service: string, body?: Uint8Array | string, options?: CallOptions): Promise<Reply> {
      return new Promise<Reply>((resolve, reject) => {
        if (call === undefined) {
          throw new JobError(ErrorCode.NO_SERVICE, "This node cannot call services");
        }
        if (typeof service !== "string") {
          throw new TypeError(`Service name must be a string: "${service}"`);
        }
        const t = options?.timeoutMs;
        if (t !== undefined && !(t > 0)) {
          throw new JobError(ErrorCode.TIMEOUT, `No time left for the call: "${t}" ms`);
        }
        const request: ThreadCall = {
          service,
          body: body === undefined
            ? new Uint8Array(0)
            : typeof body === "string"
            ? utf8.encode(body)
            : body,
          timeoutMs: t === undefined || t === Infinity ? undefined : Math.ceil(t),
          upstream: options?.upstream,
          meta: options?.meta === undefined ? undefined : fieldPairs(options.meta, "Call meta"),
        };
        call(request, (r) => {
          if (r.ok) resolve({ status: r.status, meta: r.meta, body: r.body });
          else reject(new JobError(r.code, r.message));
        });
      });
    },
  });
}
