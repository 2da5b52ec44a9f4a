/**
 * The HTTP/1.1 sender of the load generator: one request per connection at a time (no
 * pipelining), over a pool of keep-alive connections opened ahead of the run and grown on
 * demand up to a cap; a request that finds every connection busy at the cap waits (a
 * *stall*, counted).
 *
 * @module
 */
import { type HttpResponse, HttpResponseParser } from "../../protocol/http_response_parser.ts";
import { connect as tcpConnect, type TcpTransport } from "../../core/net/transport.ts";
import { type Done, type Outcome, type Sender, SLEPT_KEY, type Target } from "./sender.ts";

const enc = new TextEncoder();

interface HttpRequest {
  jobMs: number;
  done: Done;
  queuedAt: number;
}

class HttpConn {
  t: TcpTransport | null = null;
  /** Reads the responses (strict, incremental; see `protocol/http_response_parser.ts`). */
  parser: HttpResponseParser | null = null;
  current: HttpRequest | null = null;
  sentAt = 0;
  dead = false;
  /** The server closed the connection: a response it cut short counts as `closed`. */
  ending = false;
  /** What to do once the chunk that completed a response is consumed. */
  after = AFTER_NONE;
}

const AFTER_NONE = 0;
const AFTER_RELEASE = 1;
const AFTER_CLOSE = 2;

/** The outcome of a response: ok for 2xx, else `http_<status>`; the `x-slept-us` header. */
function httpOutcome(r: HttpResponse): Outcome {
  let slept = -1;
  const h = r.headers;
  for (let i = 0; i < h.length; i++) if (h[i][0] === SLEPT_KEY) slept = Number(h[i][1]);
  return { error: r.status >= 200 && r.status < 300 ? null : `http_${r.status}`, sleptUs: slept };
}

/**
 * Opens `initial` keep-alive connections (the start fails with the first refusal) and sends
 * one request per connection at a time, opening more up to `maxConnections`.
 */
export function httpSender(
  target: Target,
  initial: number,
  maxConnections: number,
  timeoutMs: number,
): Promise<Sender> {
  const path = target.path ?? `/${target.service}`;
  const extra = (target.headers ?? []).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const cache = new Map<number, Uint8Array>();
  // A job-time run (`jobMs` a number) sends `?ms=N` without a body; otherwise the body.
  const methodOf = (jobMs: number) =>
    Number.isNaN(jobMs) && (target.body?.length ?? 0) > 0 ? "POST" : "GET";
  const requestBytes = (jobMs: number): Uint8Array => {
    let bytes = cache.get(jobMs);
    if (bytes) return bytes;
    const body = Number.isNaN(jobMs) ? target.body ?? new Uint8Array(0) : new Uint8Array(0);
    const query = Number.isNaN(jobMs) ? "" : `${path.includes("?") ? "&" : "?"}ms=${jobMs}`;
    const head = `${methodOf(jobMs)} ${path}${query} HTTP/1.1\r\nhost: ${target.addr}\r\n${extra}` +
      (body.length > 0 ? `content-length: ${body.length}\r\n` : "") + "\r\n";
    const h = enc.encode(head);
    bytes = new Uint8Array(h.length + body.length);
    bytes.set(h);
    bytes.set(body, h.length);
    if (cache.size < 1024) cache.set(jobMs, bytes);
    return bytes;
  };
  const idle: HttpConn[] = [];
  const all = new Set<HttpConn>();
  const queue: HttpRequest[] = [];
  let qHead = 0;
  let connecting = 0;
  let stalls = 0;
  let opened = 0;
  let closed = false;

  const finish = (c: HttpConn, outcome: Outcome) => {
    const req = c.current;
    c.current = null;
    if (req) req.done(outcome);
  };
  const drop = (c: HttpConn, kind: string) => {
    if (c.dead) return;
    c.dead = true;
    all.delete(c);
    const i = idle.indexOf(c);
    if (i >= 0) idle.splice(i, 1);
    c.t?.close();
    if (c.current) finish(c, { error: kind, sleptUs: -1 });
    if (!closed) pump();
  };
  const onData = (c: HttpConn, chunk: Uint8Array) => {
    if (!c.current) {
      drop(c, "unexpected_response");
      return;
    }
    c.parser!.push(chunk);
    // The next request goes out only now: bytes after the response in the same chunk
    // were a response nobody asked for (a parser error), not the next one's answer.
    const after = c.after;
    c.after = AFTER_NONE;
    if (after === AFTER_CLOSE) drop(c, "closed");
    else if (after === AFTER_RELEASE) release(c);
  };
  const adopt = (t: TcpTransport): HttpConn => {
    const c = new HttpConn();
    c.t = t;
    c.parser = new HttpResponseParser({
      response(r) {
        finish(c, httpOutcome(r));
        c.after = r.keepAlive ? AFTER_RELEASE : AFTER_CLOSE;
      },
      error() {
        drop(c, c.ending ? "closed" : "bad_response");
      },
    });
    all.add(c);
    t.start({
      data: (chunk) => onData(c, chunk),
      end: () => {
        // Completes a body delimited by the end of the connection, or fails a cut one.
        c.ending = true;
        if (c.current) c.parser!.end();
        drop(c, "closed");
      },
    });
    return c;
  };
  const open = () => {
    connecting++;
    opened++;
    tcpConnect(target.addr).then((t) => {
      connecting--;
      if (closed) {
        t.close();
        return;
      }
      release(adopt(t));
    }, () => {
      connecting--;
      // The server refused: fail the oldest waiting request, and all of them when no
      // connection is left to serve them.
      if (qHead < queue.length) queue[qHead++].done({ error: "connect", sleptUs: -1 });
      if (all.size === 0 && connecting === 0) {
        while (qHead < queue.length) queue[qHead++].done({ error: "connect", sleptUs: -1 });
      }
    });
  };
  const sendOn = (c: HttpConn, req: HttpRequest) => {
    c.current = req;
    c.sentAt = performance.now();
    c.parser!.sent(methodOf(req.jobMs));
    c.t!.write(requestBytes(req.jobMs));
  };
  const release = (c: HttpConn) => {
    if (c.dead || closed) return;
    if (qHead < queue.length) {
      sendOn(c, queue[qHead++]);
      if (qHead > 1024 && qHead * 2 > queue.length) {
        queue.splice(0, qHead);
        qHead = 0;
      }
    } else idle.push(c);
  };
  const pump = () => {
    while (qHead < queue.length && idle.length > 0) sendOn(idle.pop()!, queue[qHead++]);
    const want = queue.length - qHead - connecting;
    for (let i = 0; i < want && all.size + connecting < maxConnections; i++) open();
  };
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const c of all) {
      if (c.current && now - c.sentAt > timeoutMs) drop(c, "timeout");
    }
    while (qHead < queue.length && now - queue[qHead].queuedAt > timeoutMs) {
      queue[qHead++].done({ error: "timeout", sleptUs: -1 });
    }
  }, 50);

  return new Promise((resolve, reject) => {
    // Open the initial connections before the run; the first failure fails the start.
    let ready = 0;
    let failed = false;
    const n = Math.max(1, Math.min(initial, maxConnections));
    for (let i = 0; i < n; i++) {
      opened++;
      tcpConnect(target.addr).then((t) => {
        if (failed) {
          t.close();
          return;
        }
        idle.push(adopt(t));
        if (++ready === n) resolve(sender);
      }, (err) => {
        if (failed) return;
        failed = true;
        clearInterval(sweeper);
        for (const c of all) c.t?.close();
        reject(err);
      });
    }
    const sender: Sender = {
      get waiting() {
        return queue.length - qHead;
      },
      get stalls() {
        return stalls;
      },
      get opened() {
        return opened;
      },
      retries: 0,
      send(jobMs, done) {
        const c = idle.pop();
        if (c) {
          sendOn(c, { jobMs, done, queuedAt: performance.now() });
          return;
        }
        if (all.size + connecting >= maxConnections) stalls++;
        queue.push({ jobMs, done, queuedAt: performance.now() });
        pump();
      },
      close(kind) {
        closed = true;
        clearInterval(sweeper);
        while (qHead < queue.length) queue[qHead++].done({ error: kind, sleptUs: -1 });
        for (const c of [...all]) drop(c, kind);
      },
    };
  });
}
