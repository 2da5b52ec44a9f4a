/**
 * The EP sender of the load generator: requests pipelined round-robin over one or a few
 * connections.
 *
 * @module
 */
import { type Client, connect as epConnect, ConnectionClosedError } from "../../core/net/client.ts";
import { JobError } from "../../core/job.ts";
import { type Sender, SLEPT_KEY, type Target } from "./sender.ts";

const enc = new TextEncoder();

/**
 * The request for a job time: with a mix (`jobMs` a number), EP sends the number as the
 * body and HTTP as `?ms=N` (the `sleep` service reads either); otherwise the fixed body.
 */
function epBody(target: Target, jobMs: number): Uint8Array {
  if (!Number.isNaN(jobMs)) return enc.encode(String(jobMs));
  return target.body ?? new Uint8Array(0);
}

/** Opens `connections` EP connections and sends requests round-robin over them. */
export async function epSender(
  target: Target,
  connections: number,
  timeoutMs: number,
): Promise<Sender> {
  const clients: Client[] = [];
  try {
    for (let i = 0; i < connections; i++) {
      clients.push(
        await epConnect({
          servers: target.servers ?? [target.addr],
          token: target.token,
          timeoutMs,
          retry: target.retry ? { attempts: target.retry } : undefined,
        }),
      );
    }
  } catch (err) {
    for (const c of clients) c.close();
    throw err;
  }
  let rr = 0;
  const meta = target.headers ?? [];
  const options = { timeoutMs, meta };
  return {
    waiting: 0,
    stalls: 0,
    get opened() {
      return clients.reduce((n, c) => n + c.connects, 0);
    },
    get retries() {
      return clients.reduce((n, c) => n + c.retries, 0);
    },
    send(jobMs, done) {
      const c = clients[rr];
      rr = (rr + 1) % clients.length;
      c.request(target.service, epBody(target, jobMs), options).then((reply) => {
        let slept = -1;
        for (const [k, v] of reply.meta) if (k === SLEPT_KEY) slept = Number(v);
        done({
          error: reply.status >= 200 && reply.status < 300 ? null : `status_${reply.status}`,
          sleptUs: slept,
        });
      }, (err) => {
        done({
          error: err instanceof JobError
            ? err.kind
            : err instanceof ConnectionClosedError
            ? "closed"
            : "internal",
          sleptUs: -1,
        });
      });
    },
    close() {
      for (const c of clients) c.close();
    },
  };
}
