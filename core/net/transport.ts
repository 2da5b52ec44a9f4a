/**
 * The transport layer: the only code in ep that calls `Deno.listen` and `Deno.connect`.
 * Everything above it sees {@linkcode Transport}: bytes in through a handler, bytes out
 * through `write`, and `close`. Tests of the protocol connections run on in-memory pairs.
 *
 * Write backpressure: outbound bytes are copied into a per-connection buffer and flushed
 * once per microtask (so pipelined replies coalesce into one syscall). Past `highWater`
 * buffered bytes the transport stops reading from the peer. The peer is judged only by what
 * it fails to take: bytes written while more than `highWater` are waiting are its backlog;
 * a write made when the peer has left more than `maxBuffered` of its backlog unread closes
 * the connection, as does `stuckTimeoutMs` over `highWater` without the peer taking a single
 * byte. Any other write is accepted whatever its size, so one whole reply (an EP frame of up
 * to 16 MiB, a big HTTP response) always reaches a peer that keeps up. Other connections are
 * unaffected.
 *
 * Reading clock: {@linkcode Transport.readingMs} counts only the time during which the
 * transport was reading (neither paused by its user nor by output backpressure). Timers
 * that judge the peer (heartbeats, request and idle timeouts) measure on it, so that time
 * ep itself spent not reading is never blamed on the peer.
 *
 * @module
 */
import { SlowPeerError } from "../errors.ts";

/** Receives what a transport reads. */
export interface TransportHandler {
  /** Bytes from the peer. The view is only valid during the call; copy what you keep. */
  data(chunk: Uint8Array): void;
  /** The peer finished sending (EOF) or the connection failed. Called once. */
  end(error?: Error): void;
}

/** A bidirectional byte stream: a TCP connection or an in-memory pair for tests. */
export interface Transport {
  /** The peer's address as `host:port`. */
  readonly remote: string;
  /** Bytes accepted by `write` and not yet handed to the operating system. */
  readonly buffered: number;
  /** Whether `close` was called or the connection failed. */
  readonly closed: boolean;
  /** Resolves once the connection is closed, whoever closed it. */
  readonly whenClosed: Promise<void>;
  /** Starts (or switches) delivery of incoming bytes to `handler`. */
  start(handler: TransportHandler): void;
  /** Queues bytes for sending; they are copied, so the caller may reuse `bytes`. */
  write(bytes: Uint8Array): void;
  /** Stops delivering data until `resume` (the peer is then held back by TCP). */
  pause(): void;
  /** Resumes delivery after `pause`. */
  resume(): void;
  /**
   * Milliseconds, from the transport's creation up to `now` (`Date.now()`), during which it
   * was reading: waiting for the peer, neither paused by `pause` nor by output backpressure.
   * A timer that judges the peer compares two readings of this clock.
   */
  readingMs(now: number): number;
  /** Sends what is buffered, then closes. */
  end(): void;
  /** Closes at once, dropping buffered bytes. */
  close(): void;
}

/** Limits on a transport's outbound buffer. */
export interface TransportLimits {
  /** Buffered bytes past which reading from the peer is paused. Default 1 MiB. */
  highWater: number;
  /**
   * Unread backlog past which the next write closes the connection: bytes written while
   * more than `highWater` were already waiting and still not taken. The write itself is
   * not counted against the peer, so one reply of any size always fits. Default 8 MiB.
   */
  maxBuffered: number;
  /** How long a peer may stay over `highWater` without taking a byte. Default 30 s. */
  stuckTimeoutMs: number;
  /** Size of the per-connection read buffer. Default 32 KiB. */
  readBufferSize: number;
}

/** Default {@linkcode TransportLimits}. */
export const DEFAULT_TRANSPORT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  highWater: 1 << 20,
  maxBuffered: 8 << 20,
  stuckTimeoutMs: 30_000,
  readBufferSize: 32 << 10,
});

/** Counters shared by every transport of one listener. */
export interface TransportCounters {
  /** Bytes read from peers. */
  bytesIn: number;
  /** Bytes handed to the operating system for sending. */
  bytesOut: number;
  /** Connections closed because their peer did not read. */
  stuckClosed: number;
}

/** Creates a zeroed {@linkcode TransportCounters}. */
export function newTransportCounters(): TransportCounters {
  return { bytesIn: 0, bytesOut: 0, stuckClosed: 0 };
}

/**
 * A {@linkcode Transport} over a `Deno.Conn`.
 *
 * @example
 * ```ts ignore
 * import { TcpTransport } from "./transport.ts";
 * const conn = await Deno.connect({ port: 7070 });
 * const t = new TcpTransport(conn);
 * t.start({ data: (b) => console.log(b.length), end: () => {} });
 * t.write(new TextEncoder().encode("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
 * ```
 */
export class TcpTransport implements Transport {
  readonly remote: string;
  #conn: Deno.Conn;
  #limits: TransportLimits;
  #counters: TransportCounters;
  #handler: TransportHandler | null = null;
  #readBuf: Uint8Array;
  #reading = false;
  #paused = false;
  #userPaused = false;
  #resumeWake: (() => void) | null = null;
  // Outbound: `#out[0, #outLen)` waits for the next flush; `#spare` is the buffer the
  // previous flush wrote from, reused so that steady state allocates nothing.
  #out: Uint8Array;
  #outLen = 0;
  #spare: Uint8Array;
  #inFlight = 0;
  #flushScheduled = false;
  #inData = false;
  #writing = false;
  #ending = false;
  #closed = false;
  #ended = false;
  #stuckSince = 0;
  #stuckTimer: ReturnType<typeof setTimeout> | undefined;
  // Bytes written while more than `highWater` were waiting: the peer's unread backlog.
  #backlog = 0;
  // When the peer last took bytes (Date.now), for the stuck timer.
  #lastProgress = 0;
  // The reading clock: creation time, total paused time, start of the current pause.
  #created = Date.now();
  #pausedTotal = 0;
  #pausedAt = 0;
  #closedResolve!: () => void;
  /** Resolves once the connection is closed. */
  readonly whenClosed: Promise<void> = new Promise((r) => this.#closedResolve = r);

  /** Wraps an accepted or connected `Deno.Conn`. */
  constructor(
    conn: Deno.Conn,
    options?: { limits?: Partial<TransportLimits>; counters?: TransportCounters },
  ) {
    this.#conn = conn;
    this.#limits = { ...DEFAULT_TRANSPORT_LIMITS, ...options?.limits };
    this.#counters = options?.counters ?? newTransportCounters();
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.remote = addr.hostname?.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
    this.#readBuf = new Uint8Array(this.#limits.readBufferSize);
    this.#out = new Uint8Array(16 << 10);
    this.#spare = new Uint8Array(16 << 10);
    try {
      (conn as Deno.TcpConn).setNoDelay?.(true);
    } catch {
      // Not a TCP connection (a Unix socket): nothing to set.
    }
  }

  /** Bytes buffered for sending, including those in the write being performed. */
  get buffered(): number {
    return this.#outLen + this.#inFlight;
  }

  /** Whether the connection is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  start(handler: TransportHandler): void {
    this.#handler = handler;
    if (!this.#reading && !this.#closed) {
      this.#reading = true;
      this.#readLoop();
    }
  }

  write(bytes: Uint8Array): void {
    if (this.#closed || this.#ending) return;
    const before = this.buffered;
    if (before > this.#limits.highWater) {
      // The peer is behind: what it has not taken of the bytes written since counts. They
      // are the newest in the buffer, so at most `before` of them are still waiting.
      const backlog = Math.min(this.#backlog, before);
      if (backlog > this.#limits.maxBuffered) {
        this.#counters.stuckClosed++;
        this.#fail(
          new SlowPeerError(
            `Peer ${this.remote} is not reading: ${backlog} bytes unread past the high-water mark`,
          ),
        );
        return;
      }
      this.#backlog = backlog + bytes.length;
    } else {
      this.#backlog = 0;
    }
    const need = this.#outLen + bytes.length;
    if (need > this.#out.length) {
      let size = this.#out.length * 2;
      while (size < need) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.#out.subarray(0, this.#outLen));
      this.#out = grown;
    }
    this.#out.set(bytes, this.#outLen);
    this.#outLen = need;
    // Writes made while a read chunk is being handled are flushed once after it (so the
    // answers to pipelined requests leave in one syscall); others once per microtask.
    if (!this.#flushScheduled && !this.#writing && !this.#inData) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
    this.#checkWater();
  }

  pause(): void {
    this.#userPaused = true;
    this.#setPaused(true);
  }

  resume(): void {
    this.#userPaused = false;
    this.#updatePaused();
  }

  end(): void {
    if (this.#closed) return;
    this.#ending = true;
    if (this.#outLen === 0 && !this.#writing) this.close();
  }

  readingMs(now: number): number {
    const paused = this.#pausedAt > 0 ? Math.max(0, now - this.#pausedAt) : 0;
    return Math.max(0, now - this.#created - this.#pausedTotal - paused);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closedResolve();
    clearTimeout(this.#stuckTimer);
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer or the runtime.
    }
    this.#wake();
    this.#signalEnd();
  }

  #fail(err: Error): void {
    if (this.#closed) return;
    this.#signalEnd(err);
    this.close();
  }

  #signalEnd(err?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#handler?.end(err);
  }

  #wake(): void {
    const wake = this.#resumeWake;
    this.#resumeWake = null;
    wake?.();
  }

  /** Every change of `#paused` goes through here, to keep the reading clock. */
  #setPaused(paused: boolean): void {
    if (paused === this.#paused) return;
    this.#paused = paused;
    if (paused) {
      this.#pausedAt = Date.now();
    } else {
      this.#pausedTotal += Math.max(0, Date.now() - this.#pausedAt);
      this.#pausedAt = 0;
    }
  }

  #updatePaused(): void {
    const over = this.buffered > this.#limits.highWater;
    const paused = this.#userPaused || over;
    if (this.#paused && !paused) {
      this.#setPaused(false);
      this.#wake();
    } else {
      this.#setPaused(paused);
    }
  }

  #checkWater(): void {
    const over = this.buffered > this.#limits.highWater;
    if (over && this.#stuckSince === 0) {
      this.#stuckSince = this.#lastProgress = Date.now();
      this.#setPaused(true);
      this.#armStuckTimer(this.#limits.stuckTimeoutMs);
    } else if (!over && this.#stuckSince !== 0) {
      this.#stuckSince = 0;
      clearTimeout(this.#stuckTimer);
      this.#stuckTimer = undefined;
      this.#updatePaused();
    }
  }

  /** Closes the connection once the peer has taken nothing for `stuckTimeoutMs`. */
  #armStuckTimer(ms: number): void {
    this.#stuckTimer = setTimeout(() => {
      if (this.#closed || this.buffered <= this.#limits.highWater) return;
      const quiet = Date.now() - this.#lastProgress;
      if (quiet < this.#limits.stuckTimeoutMs) {
        this.#armStuckTimer(this.#limits.stuckTimeoutMs - quiet);
        return;
      }
      this.#counters.stuckClosed++;
      this.#fail(new SlowPeerError(`Peer ${this.remote} did not read for too long`));
    }, ms);
  }

  async #readLoop(): Promise<void> {
    const buf = this.#readBuf;
    while (!this.#closed) {
      if (this.#paused) {
        await new Promise<void>((resolve) => this.#resumeWake = resolve);
        continue;
      }
      let n: number | null;
      try {
        n = await this.#conn.read(buf);
      } catch (err) {
        if (!this.#closed) this.#fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (n === null) {
        this.#signalEnd();
        return;
      }
      this.#counters.bytesIn += n;
      if (this.#closed) return;
      this.#inData = true;
      try {
        this.#handler?.data(buf.subarray(0, n));
      } finally {
        this.#inData = false;
      }
      if (this.#outLen > 0 && !this.#writing && !this.#flushScheduled) this.#flush();
    }
  }

  async #flush(): Promise<void> {
    this.#flushScheduled = false;
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#outLen > 0 && !this.#closed) {
        // Swap buffers: new writes go to the spare while this one is written out.
        const data = this.#out;
        const len = this.#outLen;
        this.#out = this.#spare;
        this.#spare = data;
        this.#outLen = 0;
        this.#inFlight = len;
        let off = 0;
        while (off < len) {
          const n = await this.#conn.write(data.subarray(off, len));
          off += n;
          this.#inFlight = len - off;
          this.#counters.bytesOut += n;
          if (n > 0) this.#lastProgress = Date.now();
        }
        this.#checkWater();
      }
    } catch (err) {
      this.#writing = false;
      this.#fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.#writing = false;
    this.#inFlight = 0;
    this.#checkWater();
    if (this.#ending && this.#outLen === 0) this.close();
  }
}

/** Options for {@linkcode listen}. */
export interface ListenOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Address to bind. Default `127.0.0.1`... use `0.0.0.0` to accept from anywhere. */
  hostname?: string;
}

/**
 * Listens for TCP connections and yields each as a {@linkcode TcpTransport}.
 *
 * @example
 * ```ts ignore
 * import { listen } from "./transport.ts";
 * const l = listen({ port: 0 });
 * console.log(l.addr.port);
 * l.close();
 * ```
 */
export function listen(
  options: ListenOptions & { limits?: Partial<TransportLimits>; counters?: TransportCounters },
): Listener {
  const hostname = options.hostname ?? "127.0.0.1";
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ port: options.port, hostname, transport: "tcp" });
  } catch (err) {
    // The OS's reason names no address: say which (the error keeps its class).
    if (err instanceof Error) {
      const where = hostname.includes(":")
        ? `[${hostname}]:${options.port}`
        : `${hostname}:${options.port}`;
      err.message = `Cannot listen on ${where}: ${err.message.charAt(0).toLowerCase()}${
        err.message.slice(1)
      }`;
    }
    throw err;
  }
  return new Listener(listener, options.limits, options.counters ?? newTransportCounters());
}

/** A TCP listener yielding transports. */
export class Listener {
  #listener: Deno.Listener;
  #limits?: Partial<TransportLimits>;
  /** Counters shared by every accepted transport. */
  readonly counters: TransportCounters;

  /** Wraps a `Deno.Listener`; prefer {@linkcode listen}. */
  constructor(
    listener: Deno.Listener,
    limits: Partial<TransportLimits> | undefined,
    counters: TransportCounters,
  ) {
    this.#listener = listener;
    this.#limits = limits;
    this.counters = counters;
  }

  /** The bound address. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr as Deno.NetAddr;
  }

  /** Accepts connections until the listener is closed. */
  async *accept(): AsyncGenerator<TcpTransport> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) {
          return;
        }
        // Out of file descriptors and the like: back off briefly, keep serving.
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      yield new TcpTransport(conn, { limits: this.#limits, counters: this.counters });
    }
  }

  /** Stops accepting. */
  close(): void {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * Connects to `host:port` and returns a {@linkcode TcpTransport}.
 *
 * @example
 * ```ts ignore
 * import { connect } from "./transport.ts";
 * const t = await connect("127.0.0.1:7070");
 * t.close();
 * ```
 */
export async function connect(
  addr: string,
  options?: { limits?: Partial<TransportLimits>; counters?: TransportCounters },
): Promise<TcpTransport> {
  const { hostname, port } = parseAddr(addr);
  const conn = await Deno.connect({ hostname, port, transport: "tcp" });
  return new TcpTransport(conn, options);
}

/**
 * Parses `host:port`, `[v6]:port` or `:port` (meaning 127.0.0.1).
 *
 * @example
 * ```ts
 * import { parseAddr } from "./transport.ts";
 * console.assert(parseAddr("[::1]:80").hostname === "::1");
 * console.assert(parseAddr(":7070").hostname === "127.0.0.1");
 * ```
 */
export function parseAddr(addr: string): { hostname: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new TypeError(`Invalid address "${addr}": expected host:port`);
  }
  return { hostname: m[1] ?? (m[2] || "127.0.0.1"), port };
}
