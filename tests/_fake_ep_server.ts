/**
 * A scripted EP server for client tests: it answers HELLO with WELCOME (the heartbeat
 * interval it is told), records every frame each connection sends, and lets the test answer
 * REQUESTs, send any frame, go silent or close. It serves real TCP connections
 * ({@linkcode FakeEpServer.listen}) or in-memory ones ({@linkcode FakeEpServer.dial}, for a
 * client's `dial` option).
 */
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { EpEncoder } from "../protocol/ep_encoder.ts";
import { type Frame, PREFACE_SIZE } from "../protocol/ep_frames.ts";
import { memoryPair } from "../core/net/memory_transport.ts";
import { listen, type Listener, type Transport } from "../core/net/transport.ts";

/** A request as the fake server received it. */
export type FakeRequest = Extract<Frame, { type: "request" }>;

/** What the fake does with a REQUEST: answer it (return frames) or hold it (return null). */
export type OnRequest = (conn: FakeConn, f: FakeRequest) => Frame[] | null;

/** One accepted connection. */
export class FakeConn {
  readonly t: Transport;
  /** Every frame the client sent on it, in order (bodies copied). */
  readonly frames: Frame[] = [];
  /** Set by the test: stop answering anything, heartbeats included. */
  silent = false;
  #enc = new EpEncoder();
  #waiters: (() => void)[] = [];

  constructor(t: Transport, server: FakeEpServer) {
    this.t = t;
    this.silent = server.mute;
    let preface = 0;
    const decoder = new EpDecoder({
      frame: (f) => {
        const kept = f.type === "request" ? { ...f, body: f.body.slice() } : f;
        this.frames.push(kept);
        for (const w of this.#waiters.splice(0)) w();
        if (this.silent) return;
        if (f.type === "hello") {
          this.send({
            type: "welcome",
            version: 1,
            maxPayload: 1 << 24,
            heartbeatMs: f.heartbeatMs === 0 ? 0 : server.heartbeatMs,
            prefetch: 0,
            serverName: server.name,
          });
        } else if (f.type === "request") {
          for (const out of server.onRequest(this, kept as FakeRequest) ?? []) this.send(out);
        }
      },
      error: () => t.close(),
    });
    t.start({
      data: (chunk) => {
        // The preface (4 bytes) first, then frames.
        const skip = Math.min(PREFACE_SIZE - preface, chunk.length);
        preface += skip;
        if (chunk.length > skip) decoder.push(chunk.subarray(skip));
      },
      end: () => {
        t.close();
        for (const w of this.#waiters.splice(0)) w();
      },
    });
  }

  /** Sends a frame to the client. */
  send(f: Frame): void {
    if (!this.t.closed) this.t.write(this.#enc.encode(f));
  }

  /** The REQUESTs received. */
  get requests(): FakeRequest[] {
    return this.frames.filter((f): f is FakeRequest => f.type === "request");
  }

  /** Waits until `pred` holds of the frames received (or the connection closed). */
  async until(pred: (frames: Frame[]) => boolean, ms = 5_000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred(this.frames)) {
      if (this.t.closed) throw new Error("connection closed before the condition held");
      const left = end - Date.now();
      if (left <= 0) throw new Error(`condition not met; frames: ${JSON.stringify(this.frames)}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }
}

/** A scripted EP server; see the module doc. */
export class FakeEpServer {
  /** Connections accepted, in order. */
  readonly conns: FakeConn[] = [];
  /** The heartbeat interval WELCOME agrees to when the client asks for any. */
  heartbeatMs: number;
  /** WELCOME's server name. */
  name: string;
  /** Answers REQUESTs; default: a 200 REPLY echoing the body. */
  onRequest: OnRequest;
  /** New connections start silent: they never answer HELLO. */
  mute = false;
  /** In-memory dials refuse while set (as a closed port does). */
  down = false;
  /** In-memory dials made. */
  dials = 0;
  #listener: Listener | null = null;
  #accepting: Promise<void> | null = null;
  #waiters: (() => void)[] = [];

  constructor(
    options: { heartbeatMs?: number; name?: string; onRequest?: OnRequest } = {},
  ) {
    this.heartbeatMs = options.heartbeatMs ?? 0;
    this.name = options.name ?? "fake";
    this.onRequest = options.onRequest ??
      ((_c, f) => [{ type: "reply", id: f.id, status: 200, freeSlots: 0, meta: [], body: f.body }]);
  }

  /** Listens on a free loopback port; returns its `host:port`. */
  listen(): string {
    this.#listener = listen({ port: 0 });
    const l = this.#listener;
    this.#accepting = (async () => {
      for await (const t of l.accept()) this.#accept(t);
    })();
    return `127.0.0.1:${l.addr.port}`;
  }

  /** An in-memory connection to this server, or a refusal while `down`. */
  dial = (_addr: string): Promise<Transport> => {
    this.dials++;
    if (this.down) {
      return Promise.reject(new Deno.errors.ConnectionRefused("Connection refused (fake)"));
    }
    const [client, server] = memoryPair();
    this.#accept(server);
    return Promise.resolve(client);
  };

  /** The last connection accepted. */
  get last(): FakeConn {
    return this.conns[this.conns.length - 1];
  }

  /** Waits until `n` connections were accepted. */
  async accepted(n: number, ms = 5_000): Promise<FakeConn> {
    const end = Date.now() + ms;
    while (this.conns.length < n) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`${this.conns.length} connections, not ${n}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
    return this.conns[n - 1];
  }

  /** Closes every connection (the listener stays). */
  dropAll(): void {
    for (const c of this.conns) c.t.close();
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    this.#listener?.close();
    this.dropAll();
    await this.#accepting;
  }

  #accept(t: Transport): void {
    this.conns.push(new FakeConn(t, this));
    for (const w of this.#waiters.splice(0)) w();
  }
}
