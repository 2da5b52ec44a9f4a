/**
 * Private: how a node carries out its handlers' calls of services (`ep.call`, a handler
 * thread's CALL record). A node that listens submits the call to its own balancer (no TCP
 * hop); a module worker sends it over EP to the balancers it pulls from, the first that
 * answers, failing over to the next when one is unreachable; a call naming an upstream
 * goes to that upstream's balancers the same way.
 *
 * @module
 */
import { ErrorCode } from "../../protocol/errors.ts";
import type { Balancer } from "../balancer/balancer.ts";
import { withoutReserved } from "../ep_limits.ts";
import { CallUnavailableError, ConnectionClosedError, JobError } from "../errors.ts";
import { isServiceName } from "../../protocol/ep_frames.ts";
import type { Job } from "../job.ts";
import { type Client, connect } from "../net/client.ts";
import type { PoolCall, PoolCallReply } from "../threads/pool_types.ts";

const utf8 = new TextEncoder();

/** Balancers to call through: their addresses (`host:port`) and the client token. */
export interface CallTarget {
  /** Addresses, tried in order. */
  servers: string[];
  /** Token presented in HELLO. */
  token?: string;
}

/** A set of balancers called over EP, with one connection kept to the first that answers. */
class Upstream {
  readonly #target: CallTarget;
  readonly #name: string;
  #client: Promise<Client> | null = null;
  #next = 0;

  constructor(name: string, target: CallTarget) {
    this.#name = name;
    this.#target = target;
  }

  async call(call: PoolCall): Promise<PoolCallReply> {
    // A closed connection: the next server, once round the list.
    for (let tries = 0; tries < Math.max(1, this.#target.servers.length); tries++) {
      let client: Client;
      try {
        client = await this.#connected();
      } catch (err) {
        this.#client = null;
        if (tries + 1 >= this.#target.servers.length) {
          throw new CallUnavailableError(
            `No balancer of ${this.#name} is reachable: ${(err as Error).message}`,
            { cause: err },
          );
        }
        continue;
      }
      try {
        const reply = await client.request(call.service, call.body, {
          timeoutMs: call.timeoutMs > 0 ? call.timeoutMs : undefined,
          meta: call.meta.length > 0 ? withoutReserved(call.meta) : undefined,
        });
        return { status: reply.status, meta: reply.meta, body: reply.body };
      } catch (err) {
        if (!(err instanceof ConnectionClosedError)) throw err;
        this.#client = null;
      }
    }
    throw new JobError(ErrorCode.WORKER_LOST, `The connection to ${this.#name} was lost`);
  }

  close(): void {
    const c = this.#client;
    this.#client = null;
    c?.then((client) => client.close(), () => {});
  }

  #connected(): Promise<Client> {
    if (this.#client === null) {
      const servers = this.#target.servers;
      const addr = servers[this.#next++ % servers.length];
      const client = connect(addr, { token: this.#target.token, name: "ep-call" });
      this.#client = client;
      client.catch(() => {
        if (this.#client === client) this.#client = null;
      });
    }
    return this.#client;
  }
}

/** Carries out a node's calls: its own balancer, the balancers it pulls from, upstreams. */
export class Caller {
  readonly #balancer: Balancer | null;
  readonly #pulled: Upstream | null;
  readonly #upstreams = new Map<string, Upstream>();

  /**
   * `balancer`: the node's own, when it listens; `pulled`: the balancers a module worker
   * pulls from; `upstreams`: named clusters handlers may call with `{ upstream = name }`.
   */
  constructor(
    balancer: Balancer | null,
    pulled: CallTarget | null,
    upstreams: Readonly<Record<string, CallTarget>> = {},
  ) {
    this.#balancer = balancer;
    this.#pulled = pulled && pulled.servers.length > 0
      ? new Upstream("the balancers", pulled)
      : null;
    for (const [name, t] of Object.entries(upstreams)) {
      this.#upstreams.set(name, new Upstream(`upstream "${name}"`, t));
    }
  }

  /** Carries out one call: resolves with its reply, rejects with a `JobError`. */
  call = async (call: PoolCall): Promise<PoolCallReply> => {
    if (!isServiceName(call.service)) {
      throw new JobError(
        ErrorCode.BAD_REQUEST,
        `Invalid service name "${call.service.slice(0, 64)}"`,
      );
    }
    if (call.upstream !== undefined) {
      const u = this.#upstreams.get(call.upstream);
      if (!u) throw new JobError(ErrorCode.NO_SERVICE, `No upstream "${call.upstream}"`);
      return await u.call(call);
    }
    if (this.#balancer) {
      const job: Job = {
        service: call.service,
        protocol: "ep",
        method: "EP",
        path: "/" + call.service,
        query: "",
        headers: withoutReserved(call.meta),
        body: call.body,
        deadlineMs: call.timeoutMs,
        priority: 0,
        remote: "local",
      };
      const r = await this.#balancer.submit(job);
      const body = r.body === undefined
        ? new Uint8Array(0)
        : typeof r.body === "string"
        ? utf8.encode(r.body)
        : r.body;
      return { status: r.status ?? 200, meta: r.headers ?? [], body };
    }
    if (this.#pulled) return await this.#pulled.call(call);
    throw new CallUnavailableError("This node has no balancer to call through");
  };

  /** Closes the connections it opened. */
  close(): void {
    this.#pulled?.close();
    for (const u of this.#upstreams.values()) u.close();
  }
}
