/**
 * An in-memory {@linkcode Transport} pair for tests of the protocol connections: what one
 * end writes, the other receives on the next microtask, split into chunks as the test asks.
 *
 * @module
 */
import type { Transport, TransportHandler } from "./transport.ts";

/** One end of a {@linkcode memoryPair}. */
export class MemoryTransport implements Transport {
  readonly remote: string;
  /** The other end. */
  peer!: MemoryTransport;
  /** Every chunk this end wrote, in order (for assertions). */
  readonly written: Uint8Array[] = [];
  #handler: TransportHandler | null = null;
  #queue: Uint8Array[] = [];
  #paused = false;
  #closed = false;
  #ended = false;
  #chunkSize: number;
  #created = Date.now();
  #pausedTotal = 0;
  #pausedAt = 0;
  #closedResolve!: () => void;
  /** Resolves once this end is closed. */
  readonly whenClosed: Promise<void> = new Promise((r) => this.#closedResolve = r);

  /** Creates one end; use {@linkcode memoryPair}. */
  constructor(remote: string, chunkSize: number) {
    this.remote = remote;
    this.#chunkSize = chunkSize;
  }

  get buffered(): number {
    return 0;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Whether delivery to this end is paused. */
  get paused(): boolean {
    return this.#paused;
  }

  start(handler: TransportHandler): void {
    this.#handler = handler;
    this.#drain();
  }

  write(bytes: Uint8Array): void {
    if (this.#closed) return;
    const copy = bytes.slice();
    this.written.push(copy);
    this.peer.#receive(copy);
  }

  pause(): void {
    if (!this.#paused) this.#pausedAt = Date.now();
    this.#paused = true;
  }

  resume(): void {
    if (this.#paused) this.#pausedTotal += Date.now() - this.#pausedAt;
    this.#paused = false;
    this.#drain();
  }

  readingMs(now: number): number {
    const paused = this.#paused ? Math.max(0, now - this.#pausedAt) : 0;
    return Math.max(0, now - this.#created - this.#pausedTotal - paused);
  }

  end(): void {
    this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closedResolve();
    this.#signalEnd();
    this.peer.#peerClosed();
  }

  #receive(bytes: Uint8Array): void {
    if (this.#closed) return;
    for (let i = 0; i < bytes.length; i += this.#chunkSize) {
      this.#queue.push(bytes.subarray(i, i + this.#chunkSize));
    }
    queueMicrotask(() => this.#drain());
  }

  #peerClosed(): void {
    queueMicrotask(() => {
      this.#drain();
      this.#signalEnd();
      if (!this.#closed) {
        this.#closed = true;
        this.#closedResolve();
      }
    });
  }

  #signalEnd(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#handler?.end();
  }

  #drain(): void {
    while (this.#handler && !this.#paused && !this.#closed && this.#queue.length > 0) {
      this.#handler.data(this.#queue.shift()!);
    }
  }
}

/**
 * Two connected in-memory transports. `chunkSize` splits every write into chunks of at most
 * that many bytes on delivery (1 feeds the peer one byte at a time).
 *
 * @example
 * ```ts
 * import { memoryPair } from "./memory_transport.ts";
 * const [a, b] = memoryPair();
 * b.start({ data: (c) => console.log(c.length), end: () => {} });
 * a.write(new Uint8Array(3));
 * ```
 */
export function memoryPair(chunkSize = 1 << 30): [MemoryTransport, MemoryTransport] {
  const a = new MemoryTransport("memory:a", chunkSize);
  const b = new MemoryTransport("memory:b", chunkSize);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
