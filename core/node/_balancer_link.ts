/**
 * The module worker's connection to one balancer ({@linkcode BalancerLink}): the EP session
 * (preface, HELLO, REGISTER, heartbeats, reconnects) that feeds jobs to the
 * {@linkcode WorkerNode} and keeps the per-balancer counts its credit policy reads (credit
 * granted and not used, the queue depth the balancer reported). The credit policy itself is
 * in `worker.ts`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { EpDecoder } from "../../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../../protocol/ep_encoder.ts";
import {
  type Frame,
  MAX_PROTOCOL_VERSION,
  NOT_APPLICABLE,
  PROTOCOL_VERSION,
} from "../../protocol/ep_frames.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { oneLine } from "../escape.ts";
import { connect as tcpConnect, type Transport } from "../net/transport.ts";
import type { ServiceDescription } from "../balancer/provider.ts";

/** How a link connects: the worker's connection options it reads. */
export interface BalancerLinkOptions {
  /** Token presented to balancers (`EP_TOKEN`). */
  token?: string;
  /** This worker's name in balancer logs. Default `ep-worker`. */
  name?: string;
  /** Heartbeat interval to ask for. Default 1 000 ms. */
  heartbeatMs?: number;
  /** Reconnect back-off: first delay and cap, in ms (jittered). Default 100 and 5 000. */
  reconnect?: { minMs?: number; maxMs?: number };
  /** Largest prefetch to use, whatever balancers allow. Default 4. */
  prefetch?: number;
  /**
   * What the worker says of its services, by name (`ep.service(…, { description, version })`):
   * sent in its STATS answer, which balancers ask for after each REGISTER (SPEC.md §6.7).
   */
  descriptions?: Readonly<Record<string, ServiceDescription>>;
  /**
   * Opens a connection to a balancer's `host:port`. Default: TCP (`connect` of
   * `core/net/transport.ts`); tests pass in-memory transports.
   */
  dial?: (addr: string) => Promise<Transport>;
}

/**
 * Where a worker's jobs come from and its answers go: a balancer over EP
 * ({@linkcode BalancerLink}), or this process's own balancer (`_local_link.ts`). The worker's
 * credit policy sees both the same way, so one slot budget serves both.
 */
export interface JobSource {
  /** Whether jobs can come from it now. */
  readonly open: boolean;
  /** Whether it said it sends no more (DRAIN). */
  readonly drained: boolean;
  /** Session counter: answers to jobs of an older session are dropped. */
  readonly gen: number;
  /** Credit granted and not yet used. */
  credit: number;
  /** Jobs it has waiting for this worker's services (its last report). */
  readonly queued: number;
  /**
   * How long, at `now` (`performance.now()` ms), the oldest job it has waiting for this
   * worker's services has waited, from its last report; NaN when it reports no waits (an
   * EP version 1 balancer). Meaningful only while {@linkcode JobSource.queued} > 0.
   */
  oldestWaitMs(now: number): number;
  /** Answers job `id` with a reply. */
  reply(
    id: number,
    status: number,
    meta: [string, string][],
    body: Uint8Array,
    freeSlots: number,
  ): void;
  /** Answers job `id` with an error. */
  error(id: number, code: number, message: string): void;
  /** Grants `n` more credit. */
  grant(n: number): void;
}

/** What a link asks of the worker it belongs to (the {@linkcode WorkerNode}'s side). */
export interface LinkOwner {
  readonly closed: boolean;
  readonly draining: boolean;
  readonly slots: number;
  readonly held: number;
  /** Slots not taken by the jobs it holds (status for HEARTBEAT and REPLY). */
  readonly freeSlots: number;
  readonly pool: { readonly services: readonly string[] };
  /**
   * The services balancers may hedge, and after how long (ms, or null: after the service's
   * recent p95): REGISTER's version-2 section (SPEC.md §6.3).
   */
  readonly hedge?: ReadonlyMap<string, number | null>;
  /** Hands out free capacity as credit. */
  regrant(): void;
  /** A job arrived on `link`. */
  run(link: BalancerLink, f: Extract<Frame, { type: "request" }>): void;
  /** The balancer cancelled job `id` on `link`. */
  cancel(link: BalancerLink, id: number): void;
  /** `link`'s session ended: the jobs it left waiting (not started) are dropped. */
  lost(link: BalancerLink): void;
}

const log = getLogger(["ep", "worker"]);

/** While a balancer stays unreachable, a warning this often (debug lines in between). */
const WARN_EVERY_MS = 30_000;

/**
 * The module worker's connection to one balancer, reconnecting with jittered back-off:
 * preface, HELLO (role worker) and REGISTER, then it runs the REQUESTs it is sent on the
 * worker, counts the balancer's credit and queue depth for the worker's credit policy, and
 * keeps heartbeats both ways.
 *
 * @example
 * ```ts ignore
 * import { BalancerLink } from "./_balancer_link.ts";
 * const link = new BalancerLink(node, "127.0.0.1:7070", options);
 * link.run();
 * ```
 */
export class BalancerLink implements JobSource {
  readonly addr: string;
  open = false;
  drained = false;
  /** Session counter: raised on every new connection. */
  gen = 0;
  credit = 0;
  demand = 0;
  prefetch = 0;
  /** The version agreed in WELCOME. */
  version = PROTOCOL_VERSION;
  /**
   * When (`performance.now()` ms) the oldest job waiting at the balancer arrived there, from
   * its last report (version 2: REQUEST, HEARTBEAT); NaN: not reported.
   */
  #oldestAt = NaN;

  /** The queue depth the balancer reported last (REQUEST, HEARTBEAT). */
  get queued(): number {
    return this.demand;
  }

  /** The oldest wait the balancer reported last, aged to `now` (a {@linkcode JobSource}). */
  oldestWaitMs(now: number): number {
    return now - this.#oldestAt;
  }
  #node: LinkOwner;
  #opts: BalancerLinkOptions;
  #t: Transport | null = null;
  #encoder = new EpEncoder();
  #decoder: EpDecoder | null = null;
  #heartbeatMs = 0;
  // On the transport's reading clock: time the worker was not reading (its output to the
  // balancer backed up) is not the balancer's silence.
  #lastRead = 0;
  #beat = 0;
  #lastBeat = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #failures = 0;
  /** Connection attempts that failed in a row, and when the last warning about them was. */
  #unreachable = 0;
  #warnedAt = 0;
  #wake: (() => void) | null = null;

  constructor(node: LinkOwner, addr: string, opts: BalancerLinkOptions) {
    this.#node = node;
    this.addr = addr;
    this.#opts = opts;
  }

  async run(): Promise<void> {
    while (!this.#node.closed) {
      let failure: unknown = null;
      try {
        const t = await (this.#opts.dial ?? tcpConnect)(this.addr);
        if (this.#node.closed) {
          t.close();
          return;
        }
        await this.#session(t);
      } catch (err) {
        failure = err;
      }
      if (this.#node.closed || this.#node.draining) return;
      const min = this.#opts.reconnect?.minMs ?? 100;
      const max = this.#opts.reconnect?.maxMs ?? 5_000;
      const delay = Math.min(max, min * 2 ** Math.min(this.#failures++, 16)) *
        (0.5 + Math.random() / 2);
      if (failure !== null) this.#cannotReach(failure, delay);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, delay);
        this.#wake = () => {
          clearTimeout(timer);
          r();
        };
      });
      this.#wake = null;
    }
  }

  /**
   * A connection attempt failed: a warning for the first failure in a row, then one every
   * {@linkcode WARN_EVERY_MS} while they go on (debug in between), each saying when the next
   * attempt is.
   */
  #cannotReach(err: unknown, delayMs: number): void {
    const now = Date.now();
    const props = {
      addr: this.addr,
      error: oneLine(err instanceof Error ? err.message : String(err)),
      delay: `${(delayMs / 1000).toFixed(1)} s`,
      attempts: this.#unreachable + 1,
    };
    if (this.#unreachable++ === 0) {
      this.#warnedAt = now;
      log.warn("Cannot reach balancer {addr}: {error}; retrying in {delay}", props);
    } else if (now - this.#warnedAt >= WARN_EVERY_MS) {
      this.#warnedAt = now;
      log.warn(
        "Still cannot reach balancer {addr} after {attempts} attempts: {error}; retrying in {delay}",
        props,
      );
    } else {
      log.debug("Cannot reach balancer {addr}: {error}; retrying in {delay}", props);
    }
  }

  /** One connection's life; resolves when it ends. */
  #session(t: Transport): Promise<void> {
    this.#t = t;
    this.gen++;
    this.credit = 0;
    this.demand = 0;
    this.#oldestAt = NaN;
    this.drained = false;
    // Version 1 until WELCOME says otherwise (SPEC.md §9.2).
    this.version = PROTOCOL_VERSION;
    this.#encoder.version = PROTOCOL_VERSION;
    return new Promise((resolve) => {
      const decoder = this.#decoder = new EpDecoder({
        frame: (f) => this.#onFrame(f),
        error: (e) => {
          log.warn("Bad frame from balancer {addr}: {message}", {
            addr: this.addr,
            message: e.message,
          });
          this.send({ type: "error", id: 0, code: e.code, message: oneLine(e.message) });
          t.end();
        },
      });
      t.start({
        data: (c) => {
          this.#lastRead = t.readingMs(Date.now());
          decoder.push(c);
        },
        end: () => {
          if (this.open) this.#lost();
          this.open = false;
          this.credit = 0;
          clearInterval(this.#timer);
          t.close();
          this.#t = null;
          // Its jobs still waiting in the worker are redelivered by the balancer: dropped.
          this.#node.lost(this);
          this.#node.regrant();
          resolve();
        },
      });
      this.#lastRead = t.readingMs(Date.now());
      t.write(encodePreface(MAX_PROTOCOL_VERSION));
      this.send({
        type: "hello",
        role: 2,
        minVersion: PROTOCOL_VERSION,
        maxVersion: MAX_PROTOCOL_VERSION,
        heartbeatMs: this.#opts.heartbeatMs ?? 1_000,
        name: this.#opts.name ?? "ep-worker",
        token: this.#opts.token ?? "",
      });
      this.register();
      // Until WELCOME arrives, nothing more; a balancer that never answers is dropped.
      this.#timer = setInterval(() => this.#tick(), 100);
    });
  }

  /**
   * The connection of a registered session ended: expected when this worker drains or closes
   * (debug), or when the balancer drained it first (info); else a warning.
   */
  #lost(): void {
    if (this.#node.closed || this.#node.draining) {
      log.debug("Disconnected from balancer {addr}", { addr: this.addr });
    } else if (this.drained) {
      log.info("Balancer {addr} went away after draining us; reconnecting", { addr: this.addr });
    } else {
      log.warn("Lost balancer {addr}; reconnecting", { addr: this.addr });
    }
  }

  #tick(): void {
    const now = Date.now();
    const hb = this.#heartbeatMs || 1_000;
    const silent = this.#t ? this.#t.readingMs(now) - this.#lastRead : 0;
    if (silent > 3 * hb) {
      log.warn("Balancer {addr} silent for {ms} ms: reconnecting", {
        addr: this.addr,
        ms: silent,
      });
      this.send({
        type: "error",
        id: 0,
        code: ErrorCode.HEARTBEAT_TIMEOUT,
        message: "Missed heartbeats",
      });
      this.#t?.close();
      return;
    }
    if (this.open && this.#heartbeatMs > 0 && now - this.#lastBeat >= this.#heartbeatMs) {
      this.#lastBeat = now;
      this.#beat = (this.#beat + 1) >>> 0;
      this.send({
        type: "heartbeat",
        seq: this.#beat,
        freeSlots: this.#node.freeSlots,
        queueDepth: NOT_APPLICABLE,
      });
    }
  }

  #onFrame(f: Frame): void {
    switch (f.type) {
      case "welcome":
        if (f.version < PROTOCOL_VERSION || f.version > MAX_PROTOCOL_VERSION) {
          this.send({
            type: "error",
            id: 0,
            code: ErrorCode.UNSUPPORTED_VERSION,
            message: `Version ${f.version} is outside ${PROTOCOL_VERSION}-${MAX_PROTOCOL_VERSION}`,
          });
          this.#t?.end();
          return;
        }
        // Every frame from now on has the agreed version's layout, both ways.
        this.version = f.version;
        this.#encoder.version = f.version;
        this.#decoder!.version = f.version;
        this.open = true;
        this.#failures = 0;
        this.#heartbeatMs = f.heartbeatMs;
        this.prefetch = f.prefetch;
        if (this.#unreachable > 0) {
          log.info("Registered with balancer {addr} ({server}) after {attempts} failed attempts", {
            addr: this.addr,
            server: f.serverName,
            attempts: this.#unreachable,
          });
        } else {
          log.info("Registered with balancer {addr} ({server})", {
            addr: this.addr,
            server: f.serverName,
          });
        }
        this.#unreachable = 0;
        // The REGISTER sent with HELLO had the version-1 layout: now say what may be hedged.
        if (this.version >= 2 && (this.#node.hedge?.size ?? 0) > 0) this.register();
        if (this.#node.draining) this.sendDrain(0);
        this.#node.regrant();
        break;
      case "request":
        this.credit = Math.max(0, this.credit - 1);
        this.demand = f.queueDepth === NOT_APPLICABLE ? 0 : f.queueDepth;
        if (f.oldestWaitMs !== undefined) this.#oldestAt = performance.now() - f.oldestWaitMs;
        this.#node.run(this, f);
        break;
      case "heartbeat":
        if (f.queueDepth !== NOT_APPLICABLE) {
          this.demand = f.queueDepth;
          if (f.oldestWaitMs !== undefined && f.oldestWaitMs !== NOT_APPLICABLE) {
            this.#oldestAt = performance.now() - f.oldestWaitMs;
          }
          if (this.demand > 0 && this.credit === 0) this.#node.regrant();
        }
        break;
      case "cancel":
        this.#node.cancel(this, f.id);
        break;
      case "drain":
        // The balancer is going away: it takes no more from us; reconnect when it closes.
        this.drained = true;
        break;
      case "error":
        if (f.id === 0) {
          log.error("Balancer {addr} refused us: {message}", {
            addr: this.addr,
            message: f.message,
          });
          this.#t?.end();
        }
        break;
      case "statsRequest":
        this.send({
          type: "stats",
          id: f.id,
          json: JSON.stringify({
            slots: this.#node.slots,
            held: this.#node.held,
            free: this.#node.freeSlots,
            services: this.#described(),
          }),
        });
        break;
      default:
        break;
    }
  }

  /** The descriptions of the services it registers (SPEC.md §6.7). */
  #described(): Record<string, ServiceDescription> {
    const all = this.#opts.descriptions ?? {};
    const out: Record<string, ServiceDescription> = {};
    for (const name of this.#node.pool.services) {
      if (Object.hasOwn(all, name)) out[name] = all[name];
    }
    return out;
  }

  send(frame: Frame): void {
    if (!this.#t || this.#t.closed) return;
    this.#t.write(this.#encoder.encode(frame));
  }

  /** Answers job `id` with a REPLY carrying the worker's free slots (a {@linkcode JobSource}). */
  reply(
    id: number,
    status: number,
    meta: [string, string][],
    body: Uint8Array,
    freeSlots: number,
  ): void {
    this.send({ type: "reply", id, status, freeSlots, meta, body });
  }

  /** Answers job `id` with an ERROR. */
  error(id: number, code: number, message: string): void {
    this.send({ type: "error", id, code, message });
  }

  /** Grants `n` more credit (READY). */
  grant(n: number): void {
    this.send({ type: "ready", credit: n });
  }

  /**
   * Sends REGISTER: the worker's slots and services, and (version 2, once agreed) after how
   * long each may be hedged (NA: after its p95; 0: never).
   */
  register(): void {
    const services = [...this.#node.pool.services];
    const hedge = this.#node.hedge;
    this.send({
      type: "register",
      slots: this.#node.slots,
      services,
      hedgeMs: this.version >= 2 && hedge && hedge.size > 0
        ? services.map((s) => hedge.has(s) ? hedge.get(s) ?? NOT_APPLICABLE : 0)
        : undefined,
    });
  }

  sendDrain(graceMs: number): void {
    if (this.open) this.send({ type: "drain", graceMs });
  }

  close(): void {
    clearInterval(this.#timer);
    this.#t?.end();
    this.#wake?.();
  }
}
