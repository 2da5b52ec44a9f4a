/**
 * What the TypeScript runtime adds to each job on its handler thread: the handler called
 * with the bytes as they arrived (the runtime before handlers got an `EpRequest`) against
 * the runtime's `handle` (an `EpRequest`, the job kept by slot for `cancel`), `ended` and
 * the reply check, for a handler that reads only its body; and, apart, what reading the
 * whole request and the signal costs a handler that does.
 *
 *   deno bench -A tests/bench/ts_runtime.bench.ts
 *
 * `deno bench` prints each group's ratio against its baseline. Tickets cycle over 64 slots,
 * as on a thread with 64 slots.
 *
 * @module
 */
import { encodeMeta } from "../../protocol/ep_meta.ts";
import { ReplyParts } from "../../core/threads/_reply.ts";
import type { HandlerRequest } from "../../core/threads/runtime.ts";
import { tsHandlerRuntime } from "../../core/threads/ts_runtime.ts";
import type { EpRequest } from "../../core/threads/ep_request.ts";

const BODY = new Uint8Array(64).fill(1);
const META = encodeMeta([
  ["ep-method", "POST"],
  ["ep-path", "/echo"],
  ["ep-query", "a=1"],
  ["ep-request-id", "0123456789abcdef"],
  ["host", "127.0.0.1:7070"],
  ["content-type", "text/plain"],
  ["user-agent", "curl/8.5.0"],
]);

let n = 0;
/** The next job, its ticket cycling over 64 slots with rising generations. */
function job(): HandlerRequest {
  n++;
  const ticket = ((((n >> 6) & 0x7fff) + 1) << 16) | (n & 63);
  return { id: ticket, service: "echo", meta: META, body: BODY, deadline: 1e12 };
}

const bare = [(req: { body: Uint8Array }) => req.body];
const echo = tsHandlerRuntime({ echo: (req) => req.body }, undefined);
const whole = tsHandlerRuntime({
  echo: (req: EpRequest) => {
    if (req.signal.aborted || req.headers.get("content-type") === null) throw new Error("?");
    return req.method + req.path + req.id + req.attempt;
  },
}, undefined);
const reply = new ReplyParts();

Deno.bench("handler called with the job's bytes", { group: "per job", baseline: true }, () => {
  const req = job();
  reply.set(bare[0](req));
});

Deno.bench("runtime: EpRequest, kept by slot, ended", { group: "per job" }, () => {
  const req = job();
  const r = echo.handle(req, 0);
  echo.ended!(req.id);
  reply.set(r as Uint8Array);
});

Deno.bench(
  "runtime: a handler reading the whole request and its signal",
  { group: "per job" },
  () => {
    const req = job();
    const r = whole.handle(req, 0);
    whole.ended!(req.id);
    reply.set(r as string);
  },
);
