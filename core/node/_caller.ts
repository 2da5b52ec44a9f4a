/**
 * Private: how a node carries out its handlers' calls of services (`ep.call`, a handler
 * thread's CALL record). A node that listens submits the call to its own balancer (no TCP
 * hop); a module worker sends it over EP to the balancers it pulls from, and a call naming
 * an upstream to that upstream's balancers, each set through one surviving client
 * (`core/net/client.ts`): one connection to the first balancer that answers, failover to the
 * next, reconnection with back-off, and a retry of a call whose balancer could not be
 * reached, went away or was lost with the call in flight.
 *
 * @module
 */
import { ErrorCode } from "../../protocol/errors.ts";
import type { Balancer } from "../balancer/balancer.ts";
import { withoutReserved } from "../ep_limits.ts";
import {
  CallUnavailableError,
  ConnectionClosedError,
  JobError,
  ServerUnreachableError,
} from "../errors.ts";
import { isServiceName } from "../../protocol/ep_frames.ts";
import type { Job } from "../job.ts";
import { Client } from "../net/client.ts";
import type { Transport } from "../net/transport.ts";
import type { PoolCall, PoolCallReply } from "../threads/pool_types.ts";

const utf8 = new TextEncoder();

/** Balancers to call through: their addresses (`host:port`) and the client token. */
export interface CallTarget {
  /** Addresses, tried in order. */
  servers: string[];
  /** Token presented in HELLO. */
  token?: string;
}

/** How the caller connects: `dial` opens a connection (default TCP; tests pass their own). */
export interface CallerOptions {
  /** Opens a connection to a balancer's `host:port`. */
  dial?: (addr: string) => Promise<Transport>;
}

/** A set of balancers called over EP through one client, made at the first call. */
class Upstream {
  readonly #target: CallTarget;
  readonly #name: string;
  readonly #dial: CallerOptions["dial"];
  #client: Client | null = null;

  constructor(name: string, target: CallTarget, dial: CallerOptions["dial"]) {
    this.#name = name;
    this.#target = target;
    this.#dial = dial;
  }

  async call(call: PoolCall): Promise<PoolCallReply> {
    this.#client ??= new Client({
      servers: this.#target.servers,
      token: this.#target.token,
      name: "ep-call",
      dial: this.#dial,
      // Once round the list: a call whose balancer was unreachable, went away, or was lost
      // with the call in flight (it may have run: at-least-once, as for a lost worker).
      retry: {
        attempts: Math.max(1, this.#target.servers.length),
        backoffMs: 50,
        on: ["unreachable", "shutting_down", "closed"],
      },
    });
    try {
      const reply = await this.#client.request(call.service, call.body, {
        timeoutMs: call.timeoutMs > 0 ? call.timeoutMs : undefined,
        meta: call.meta.length > 0 ? withoutReserved(call.meta) : undefined,
      });
      return { status: reply.status, meta: reply.meta, body: reply.body };
    } catch (err) {
      if (err instanceof ServerUnreachableError) {
        throw new CallUnavailableError(
          `No balancer of ${this.#name} is reachable: ${err.message}`,
          { cause: err },
        );
      }
      if (err instanceof ConnectionClosedError) {
        throw new JobError(ErrorCode.WORKER_LOST, `The connection to ${this.#name} was lost`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  close(): void {
    this.#client?.close();
    this.#client = null;
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
    options: CallerOptions = {},
  ) {
    this.#balancer = balancer;
    this.#pulled = pulled && pulled.servers.length > 0
      ? new Upstream("the balancers", pulled, options.dial)
      : null;
    for (const [name, t] of Object.entries(upstreams)) {
      this.#upstreams.set(name, new Upstream(`upstream "${name}"`, t, options.dial));
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
