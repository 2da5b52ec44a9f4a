/**
 * The listener: one TCP port for every protocol. Each accepted connection is sniffed from
 * its first bytes and handed to the EP or HTTP/1.1 connection; anything else (TLS, the
 * HTTP/2 preface, garbage, silence) gets a clean refusal, is counted and closed.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { refusal, sniff, SNIFF_MAX_BYTES, type SniffResult } from "../../protocol/sniff.ts";
import { EpConnection, type EpOptions } from "./ep_conn.ts";
import { HttpConnection, type HttpCounters, type HttpOptions } from "./http_conn.ts";
import type { JobHandler } from "../job.ts";
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from "../../protocol/http_parser.ts";
import { DEFAULT_MAX_PAYLOAD, DEFAULT_PREFETCH } from "../../protocol/ep_frames.ts";
import {
  listen,
  type Listener,
  type Transport,
  type TransportCounters,
  type TransportLimits,
} from "./transport.ts";

const log = getLogger(["ep", "server"]);

/** Options for {@linkcode serve}. */
export interface ServeOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Address to bind. Default `127.0.0.1`. */
  hostname?: string;
  /** Answers every job, from HTTP and EP alike. */
  handler: JobHandler;
  /** Time a new connection has to send its first bytes. Default 5 s. */
  sniffTimeoutMs?: number;
  /** HTTP/1.1 options. */
  http?: HttpOptions;
  /** EP options. */
  ep?: EpOptions;
  /** Outbound buffer limits per connection. */
  transport?: Partial<TransportLimits>;
  /**
   * Open connections past which new ones are closed at once, before anything is read
   * (counted in `refused`). Default 10 000.
   */
  maxConnections?: number;
}

/** What a server counted since it started. */
export interface ServerCounters {
  /** Connections accepted, by protocol once sniffed. */
  connections: { http: number; ep: number };
  /** Connections refused by the sniffer, by reason. */
  sniffRejected: { tls: number; h2: number; unknown: number; timeout: number };
  /** Connections open now. */
  open: number;
  /** Connections closed at accept because `maxConnections` were open. */
  refused: number;
  /** Bytes and stuck peers. */
  transport: TransportCounters;
  /** HTTP requests parsed and rejected. */
  http: HttpCounters;
}

interface Ticking {
  readonly closed: boolean;
  tick(now: number): void;
  /** The server is going away; returns whether the server waits for this connection. */
  drain(graceMs: number): boolean;
  /** The server closes next: a worker's connection is told and closed; resolves then. */
  goingAway?(): Promise<void> | null;
}

/** The limits a server runs with (its options, defaults filled in), for the status page. */
export interface ServerLimits {
  /** Open connections past which new ones are closed at once. */
  maxConnections: number;
  /** HTTP/1.1 request limits (request line, header section, body, …). */
  http: HttpLimits;
  /** Largest EP frame payload accepted, bytes. */
  epMaxPayload: number;
  /** EP jobs in flight on one connection past which reading pauses. */
  epMaxInFlight: number;
  /** Jobs beyond its slots a worker may be handed (WELCOME `prefetch`). */
  prefetch: number;
}

/** A running server. */
export interface Server {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** Counters for metrics. */
  readonly counters: ServerCounters;
  /** The limits in force. */
  readonly limits?: ServerLimits;
  /**
   * Goes away gracefully: stops accepting, tells EP clients (DRAIN) and HTTP clients
   * (`connection: close`), and resolves once every client connection has been answered and
   * closed, or after `graceMs`. Workers' connections stay open (their jobs are finished by
   * then). Call {@linkcode Server.close} after.
   */
  drain(graceMs: number): Promise<void>;
  /** Stops accepting and closes every connection. */
  close(): Promise<void>;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
}

/**
 * Listens on one port and serves EP and HTTP/1.1 on it, sniffed per connection.
 *
 * @example
 * ```ts ignore
 * import { serve } from "./server.ts";
 * const server = serve({ port: 7070, handler: (job) => ({ body: job.body }) });
 * await server.finished;
 * ```
 */
export function serve(options: ServeOptions): Server {
  const listener: Listener = listen({
    port: options.port,
    hostname: options.hostname,
    limits: options.transport,
  });
  const counters: ServerCounters = {
    connections: { http: 0, ep: 0 },
    sniffRejected: { tls: 0, h2: 0, unknown: 0, timeout: 0 },
    open: 0,
    refused: 0,
    transport: listener.counters,
    http: { requests: 0, rejected: 0 },
  };
  const sniffTimeout = options.sniffTimeoutMs ?? 5_000;
  const live = new Set<Ticking>();
  const transports = new Set<Transport>();

  // The connections' timeouts and heartbeats tick every 250 ms while there are any; with
  // none, no timer (every wake-up of an idle process costs CPU).
  let sweeper: ReturnType<typeof setInterval> | undefined;
  let stopped = false;
  const tick = () => {
    const now = Date.now();
    for (const c of live) {
      if (c.closed) live.delete(c);
      else c.tick(now);
    }
    if (live.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };
  const watch = (c: Ticking) => {
    live.add(c);
    if (sweeper === undefined && !stopped) sweeper = setInterval(tick, 250);
  };

  const maxConnections = options.maxConnections ?? 10_000;
  const accept = (t: Transport) => {
    if (counters.open >= maxConnections) {
      counters.refused++;
      log.debug("Refused connection from {remote}: {open} open", {
        remote: t.remote,
        open: counters.open,
      });
      t.close();
      return;
    }
    counters.open++;
    transports.add(t);
    let buf = new Uint8Array(0);
    let decided = false;
    // Measured on the transport's reading clock, like every timer that judges a peer.
    const started = t.readingMs(Date.now());
    const sniffer: Ticking & { closed: boolean } = {
      closed: false,
      drain() {
        // Not yet told apart: a connection that has said nothing is closed.
        if (!decided && !sniffer.closed) {
          sniffer.closed = true;
          t.close();
        }
        return false;
      },
      tick(now) {
        if (!decided && t.readingMs(now) - started > sniffTimeout) {
          counters.sniffRejected.timeout++;
          log.debug("Sniff timeout from {remote}", { remote: t.remote });
          sniffer.closed = true;
          t.close();
        }
      },
    };
    watch(sniffer);
    t.whenClosed.then(() => {
      counters.open--;
      transports.delete(t);
    });
    t.start({
      data(chunk) {
        if (decided) return;
        const joined = new Uint8Array(buf.length + chunk.length);
        joined.set(buf);
        joined.set(chunk, buf.length);
        buf = joined;
        const kind: SniffResult = sniff(buf.subarray(0, SNIFF_MAX_BYTES + 4));
        if (kind === "more") return;
        decided = true;
        sniffer.closed = true;
        if (kind === "http") {
          counters.connections.http++;
          const conn = new HttpConnection(t, options.handler, options.http ?? {}, counters.http);
          watch(conn);
          conn.start(buf);
        } else if (kind === "ep") {
          counters.connections.ep++;
          const conn = new EpConnection(t, options.handler, options.ep ?? {});
          watch(conn);
          conn.start(buf);
        } else {
          counters.sniffRejected[kind]++;
          log.debug("Refused {kind} connection from {remote}", { kind, remote: t.remote });
          const bytes = refusal(kind);
          if (bytes.length > 0) {
            t.write(bytes);
            t.end();
          } else {
            t.close();
          }
        }
      },
      end() {
        if (!decided) {
          sniffer.closed = true;
          t.close();
        }
      },
    });
  };

  const finished = (async () => {
    for await (const t of listener.accept()) accept(t);
  })();

  let draining: Promise<void> | null = null;
  return {
    addr: listener.addr,
    counters,
    limits: {
      maxConnections,
      http: { ...DEFAULT_HTTP_LIMITS, ...options.http?.limits },
      epMaxPayload: options.ep?.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      epMaxInFlight: options.ep?.maxInFlight ?? 1024,
      prefetch: options.ep?.prefetch ?? DEFAULT_PREFETCH,
    },
    finished,
    drain(graceMs) {
      draining ??= (async () => {
        listener.close();
        const end = Date.now() + graceMs;
        // Told once, asked again each poll: a connection that became a worker's, or
        // closed, is no longer waited for.
        while (Date.now() < end) {
          let waiting = 0;
          for (const c of live) if (!c.closed && c.drain(graceMs)) waiting++;
          if (waiting === 0) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        const told = [...live].flatMap((c) => c.goingAway?.() ?? []);
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          Promise.all(told),
          new Promise((r) => timer = setTimeout(r, 1_000)),
        ]);
        clearTimeout(timer);
        await finished;
      })();
      return draining;
    },
    async close() {
      listener.close();
      stopped = true;
      clearInterval(sweeper);
      for (const t of transports) t.close();
      await finished;
    },
  };
}
