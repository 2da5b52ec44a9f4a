/**
 * The HTTP worker behind nginx and HAProxy in `compare.ts`: an HTTP/1.1 server (ep's own
 * `serve`, keep-alive, any number of connections) that runs **one job at a time** and
 * queues the rest in arrival order. Jobs run on a one-thread, one-slot handler pool with
 * ep's demo services (`cli/demo_services.ts`), so a `sleep` job here holds its slot exactly
 * as it does in an `ep worker --threads 1 --concurrency 1`: same code, same thread, same
 * precise sleep. Only the queueing differs: here a local FIFO per worker, in ep one
 * central queue in the balancer.
 *
 *   deno run -A tests/bench/_compare_http_worker.ts [--port 0]
 *
 * Prints `port <n>` once listening; stops on SIGTERM/SIGINT.
 */
import { parseArgs } from "node:util";
import { decodeMeta, encodeMeta } from "../../protocol/ep_meta.ts";
import { type Job, JobError, type JobResult } from "../../core/job.ts";
import { jobMeta } from "../../core/job.ts";
import { HandlerPool, type JobReply, TS_HANDLER_RUNTIME } from "../../core/threads/pool.ts";
import { serve } from "../../core/net/server.ts";
import { ErrorCode } from "../../protocol/errors.ts";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" } } });

const pool = await HandlerPool.start({
  module: TS_HANDLER_RUNTIME,
  moduleOptions: { handlers: new URL("../../cli/demo_services.ts", import.meta.url).href },
  threads: 1,
  perThreadConcurrency: 1,
});

interface Waiting {
  job: Job;
  resolve: (r: JobResult) => void;
  reject: (e: JobError) => void;
}

const fifo: Waiting[] = [];
let head = 0;
let seq = 0;

function next(): void {
  while (head < fifo.length && pool.freeSlots > 0) {
    const w = fifo[head++];
    if (head > 256 && head * 2 > fifo.length) {
      fifo.splice(0, head);
      head = 0;
    }
    run(w);
  }
}

function run(w: Waiting): void {
  const meta = jobMeta(w.job);
  pool.submit({
    id: ++seq,
    service: w.job.service,
    meta: meta.length > 0 ? encodeMeta(meta) : undefined,
    body: w.job.body,
  }, (err: Error | null, reply: JobReply | null) => {
    if (err || !reply) w.reject(new JobError(ErrorCode.HANDLER_ERROR, err?.message ?? "failed"));
    else w.resolve({ status: reply.status, headers: decodeMeta(reply.meta), body: reply.body });
    next();
  });
}

const server = serve({
  port: Number(values.port),
  handler: (job) => {
    if (!pool.serves(job.service)) {
      throw new JobError(ErrorCode.NO_SERVICE, `No service "${job.service}"`);
    }
    return new Promise<JobResult>((resolve, reject) => {
      fifo.push({ job, resolve, reject });
      next();
    });
  },
});
console.log(`port ${server.addr.port}`);

const stop = async () => {
  await server.close();
  await pool.close({ drain: false });
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
