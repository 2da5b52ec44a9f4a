/**
 * The runtime's floor in `compare.ts` (contender `deno-floor`): the least a Deno process
 * does to forward HTTP jobs through a central queue. It fronts the same HTTP workers as
 * nginx and HAProxy with one connection to each and one request in flight on it (what
 * HAProxy's `maxconn 1` does): a request that finds an idle backend is written to it at
 * once, the others wait in one FIFO. No validation beyond finding the framing, no limits,
 * no metrics, no timeouts; `GET`-style requests only (a request with a body is refused),
 * responses framed by `Content-Length`. It is not a product: it measures what ep's
 * balancer costs above the socket reads and writes any Deno program pays (`Deno.Conn`,
 * one read and one write per request on each side).
 *
 *   deno run -A tests/bench/_floor_proxy.ts --backend 127.0.0.1:8001 --backend … [--port 0]
 *
 * Prints `port <n>` once listening; stops on SIGTERM/SIGINT.
 *
 * @module
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    backend: { type: "string", multiple: true, default: [] },
  },
});

const CR = 13;
const LF = 10;
const latin1 = new TextDecoder("latin1");
const refused = new TextEncoder().encode(
  "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
);
const failed = new TextEncoder().encode(
  "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
);

/** Index just past the first CRLFCRLF in `b[0, n)`, from `from`; -1 if none. */
function headEnd(b: Uint8Array, n: number, from: number): number {
  for (let i = Math.max(from, 3); i < n; i++) {
    if (b[i] === LF && b[i - 1] === CR && b[i - 2] === LF && b[i - 3] === CR) return i + 1;
  }
  return -1;
}

/** Content-Length of a head (latin-1 text), 0 when absent, -1 for other framing. */
function bodyLength(head: string): number {
  const lower = head.toLowerCase();
  if (lower.includes("\r\ntransfer-encoding:")) return -1;
  const at = lower.indexOf("\r\ncontent-length:");
  if (at < 0) return 0;
  const n = parseInt(lower.slice(at + 17, lower.indexOf("\r\n", at + 17)).trim(), 10);
  return Number.isSafeInteger(n) && n >= 0 ? n : -1;
}

interface Request {
  head: Uint8Array;
  answer: (response: Uint8Array | null) => void;
}

/**
 * One backend connection, one request at a time. A kept-alive connection the backend
 * closed while idle is opened again and the request sent once more (as nginx does with
 * its cached upstream connections): only when no byte of the response had come.
 */
class Backend {
  #buf = new Uint8Array(64 * 1024);
  #conn: Deno.Conn | null = null;
  constructor(readonly hostname: string, readonly port: number) {}

  async connect(): Promise<Deno.Conn> {
    const conn = await Deno.connect({ hostname: this.hostname, port: this.port });
    conn.setNoDelay(true);
    return this.#conn = conn;
  }

  /** Forwards `r` and reads its whole response; null when the backend failed. */
  async exchange(r: Request): Promise<Uint8Array | null> {
    for (let attempt = 0; attempt < 2; attempt++) {
      let got = 0;
      try {
        const conn = this.#conn ?? await this.connect();
        await conn.write(r.head);
        let end = -1;
        let total = -1;
        for (;;) {
          if (got === this.#buf.length) break;
          const n = await conn.read(this.#buf.subarray(got));
          if (n === null) break;
          const before = got;
          got += n;
          if (end < 0) {
            end = headEnd(this.#buf, got, before);
            if (end < 0) continue;
            const len = bodyLength(latin1.decode(this.#buf.subarray(0, end)));
            if (len < 0) break;
            total = end + len;
          }
          if (got >= total) return this.#buf.slice(0, total);
        }
      } catch {
        // Lost: below.
      }
      this.#drop();
      if (got > 0) return null;
    }
    return null;
  }

  #drop(): void {
    try {
      this.#conn?.close();
    } catch {
      // Already closed.
    }
    this.#conn = null;
  }
}

const idle: Backend[] = [];
const queue: Request[] = [];
let queueHead = 0;

function submit(r: Request): void {
  const b = idle.pop();
  if (b) void run(b, r);
  else queue.push(r);
}

async function run(b: Backend, first: Request): Promise<void> {
  let r: Request | undefined = first;
  while (r) {
    r.answer(await b.exchange(r));
    r = queueHead < queue.length ? queue[queueHead++] : undefined;
    if (queueHead === queue.length) {
      queue.length = 0;
      queueHead = 0;
    }
  }
  idle.push(b);
}

async function client(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(16 * 1024);
  let got = 0;
  try {
    for (;;) {
      let end = headEnd(buf, got, 0);
      while (end < 0) {
        if (got === buf.length) return;
        const n = await conn.read(buf.subarray(got));
        if (n === null) return;
        const before = got;
        got += n;
        end = headEnd(buf, got, before);
      }
      if (bodyLength(latin1.decode(buf.subarray(0, end))) !== 0) {
        await conn.write(refused);
        return;
      }
      const head = buf.slice(0, end);
      buf.copyWithin(0, end, got);
      got -= end;
      const response = await new Promise<Uint8Array | null>((answer) => submit({ head, answer }));
      await conn.write(response ?? failed);
      if (response === null) return;
    }
  } catch {
    // The client went away.
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

for (const addr of values.backend) {
  const i = addr.lastIndexOf(":");
  const b = new Backend(addr.slice(0, i), Number(addr.slice(i + 1)));
  await b.connect();
  idle.push(b);
}
const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(values.port) });
console.log(`port ${(listener.addr as Deno.NetAddr).port}`);
for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => Deno.exit(0));
for await (const conn of listener) {
  conn.setNoDelay(true);
  void client(conn);
}
