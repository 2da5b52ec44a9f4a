/**
 * `ep call <service> [body | @file | -]`: sends one request over EP (or HTTP/1.1 with
 * `--http`) and prints the reply body. The exit code tells how a request failed.
 *
 * @module
 */
import { connect, ConnectionClosedError, ServerUnreachableError } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import {
  ADDRESS_FLAGS,
  CLIENT_FLAGS,
  clientAddr,
  FAILOVER_FLAGS,
  HELP_FLAG,
  parseFlags,
  parseHeaderArg,
  parseMs,
  parseRetry,
  parseServers,
  REQUEST_FLAGS,
} from "./flags.ts";
import { connect as tcpConnect } from "../core/net/transport.ts";
import { escapeControls } from "../core/escape.ts";
import { HttpResponseParser } from "../protocol/http_response_parser.ts";

/**
 * Exit codes of `ep call`, one per way a request can fail.
 *
 * @example
 * ```ts
 * import { EXIT } from "./call.ts";
 * console.assert(EXIT.timeout === 3 && EXIT.refused === 7);
 * ```
 */
export const EXIT = {
  /** The reply came, with a 2xx status. */
  ok: 0,
  /** Any other failure: an error reply or status, a broken connection. */
  error: 1,
  /** Bad arguments. */
  usage: 2,
  /** The request timed out (EP `timeout`, HTTP 504, or no answer within `--timeout`). */
  timeout: 3,
  /** The service's queue was full (EP `overloaded`, HTTP 503 "… is full"). */
  overloaded: 4,
  /** No worker serves the service (EP `no_service`, HTTP 503 "No service …"). */
  noService: 5,
  /** The worker running the job was lost (EP `worker_lost`, HTTP 502). */
  workerLost: 6,
  /** Nothing listens at the address. */
  refused: 7,
} as const;

const USAGE = `ep call: send one request and print the reply body

Usage: ep call <service> [body | @file | -] [options]

  body                 the request body as text; @file reads a file, - reads stdin
                       (over HTTP: POST with the body, GET without one)

Options:
  --addr <host:port>   server (default $EP_ADDR, else --host/$EP_HOST and --port/$EP_PORT,
                       else 127.0.0.1:7070)
  --port <n>, --host <h>
                       the server's port and host, when no --addr is given
  --http               use HTTP/1.1 (POST|GET /<service>) instead of EP
  --timeout <ms>       request timeout, also sent as the job's deadline (default 30000)
  --header <k:v>       a header field (HTTP) or metadata entry (EP); repeatable
  --token <t>          EP token (default $EP_TOKEN)
  --servers <a,b,...>  EP: balancers to fail over across, in this order (instead of --addr)
  --retry <n>          EP: send a request again, up to n times with back-off within
                       --timeout, when it failed overloaded, shutting_down, worker_lost
                       or with a lost connection (it may then run twice)
  -h, --help           this help

Exit codes:
  0  ok (a 2xx reply)
  1  other error (an error reply or status, a broken connection)
  2  usage
  3  timeout          (EP timeout, HTTP 504, or no answer in time)
  4  overloaded       (EP overloaded, HTTP 503 "queue ... is full")
  5  no service       (EP no_service, HTTP 503 "No service ...")
  6  worker lost      (EP worker_lost, HTTP 502)
  7  connection refused
`;

/**
 * Where `ep call` reads and writes: the process's standard streams unless a caller (a test)
 * passes its own.
 *
 * @example
 * ```ts
 * import type { CallIo } from "./call.ts";
 * const chunks: Uint8Array[] = [];
 * const io: Partial<CallIo> = { out: (b) => void chunks.push(b.slice()) };
 * console.assert(typeof io.out === "function");
 * ```
 */
export interface CallIo {
  /** Receives the reply body. */
  out(bytes: Uint8Array): Promise<void> | void;
  /** Receives messages (errors, usage). */
  err(line: string): void;
  /** The body source for `-`. */
  stdin(): ReadableStream<Uint8Array>;
}

const STD_IO: CallIo = {
  out: writeAll,
  err: (line) => console.error(line),
  stdin: () => Deno.stdin.readable,
};

interface CallFlags {
  addr?: string;
  servers?: string;
  retry?: string;
  port?: string;
  host?: string;
  timeout?: string;
  token?: string;
  http?: boolean;
  header?: string[];
}

/**
 * Runs `ep call` with its arguments and returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { callMain } from "./call.ts";
 * Deno.exit(await callMain(["echo", "hi", "--addr", "127.0.0.1:7070"]));
 * ```
 */
export async function callMain(args: string[], io: Partial<CallIo> = {}): Promise<number> {
  const sio: CallIo = { ...STD_IO, ...io };
  let values: CallFlags & { help?: boolean };
  let rest: string[];
  try {
    const parsed = parseFlags(args, {
      ...CLIENT_FLAGS,
      ...ADDRESS_FLAGS,
      ...REQUEST_FLAGS,
      ...FAILOVER_FLAGS,
      ...HELP_FLAG,
    });
    values = parsed.values;
    rest = parsed.positionals;
  } catch (err) {
    sio.err(`ep call: ${(err as Error).message} (see ep call --help)`);
    return EXIT.usage;
  }
  if (values.help) {
    await sio.out(new TextEncoder().encode(USAGE));
    return EXIT.ok;
  }
  return await call(rest, values, sio);
}

async function call(rest: string[], values: CallFlags, io: CallIo): Promise<number> {
  const [service, arg, extra] = rest;
  if (!service) {
    io.err(`ep call: missing service name\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (extra !== undefined) {
    io.err(`ep call: unexpected argument "${extra}"`);
    return EXIT.usage;
  }
  let timeoutMs: number;
  let addr: string;
  try {
    timeoutMs = values.timeout === undefined ? 30_000 : parseMs(values.timeout, "--timeout");
    addr = clientAddr(values);
  } catch (err) {
    io.err(`ep call: ${(err as Error).message}`);
    return EXIT.usage;
  }
  const headers: [string, string][] = [];
  for (const h of values.header ?? []) {
    try {
      headers.push(parseHeaderArg(h));
    } catch (err) {
      io.err(`ep call: ${(err as Error).message}`);
      return EXIT.usage;
    }
  }
  let body: Uint8Array | null = null;
  try {
    if (arg === "-") body = new Uint8Array(await new Response(io.stdin()).arrayBuffer());
    else if (arg?.startsWith("@")) body = await Deno.readFile(arg.slice(1));
    else if (arg !== undefined) body = new TextEncoder().encode(arg);
  } catch (err) {
    io.err(`ep call: cannot read the body: ${(err as Error).message}`);
    return EXIT.usage;
  }
  let servers: string[];
  let retry: number | undefined;
  try {
    const listed = parseServers({ servers: values.servers, addr: values.addr });
    servers = values.servers !== undefined && listed ? listed : [addr];
    retry = parseRetry(values.retry);
    if (values.http && (values.servers !== undefined || retry !== undefined)) {
      throw new RangeError("--servers and --retry are for EP: drop --http");
    }
  } catch (err) {
    io.err(`ep call: ${(err as Error).message}`);
    return EXIT.usage;
  }
  return values.http
    ? await callHttp(io, addr, service, body, headers, timeoutMs)
    : await callEp(io, servers, service, body, headers, timeoutMs, values.token, retry);
}

function connectFailure(io: CallIo, addr: string, err: unknown): number {
  // Several servers: refused when the last one tried refused.
  const cause = err instanceof ServerUnreachableError ? err.cause : err;
  io.err(
    `ep call: cannot connect to ${addr}: ${escapeControls(lowerFirst((err as Error).message))}`,
  );
  return cause instanceof Deno.errors.ConnectionRefused ? EXIT.refused : EXIT.error;
}

async function callEp(
  io: CallIo,
  servers: string[],
  service: string,
  body: Uint8Array | null,
  meta: [string, string][],
  timeoutMs: number,
  token: string | undefined,
  retry: number | undefined,
): Promise<number> {
  let client;
  try {
    client = await connect({
      servers,
      token: token ?? Deno.env.get("EP_TOKEN"),
      timeoutMs,
      retry: retry ? { attempts: retry } : undefined,
    });
  } catch (err) {
    return connectFailure(io, servers.join(", "), err);
  }
  try {
    const reply = await client.request(service, body ?? new Uint8Array(0), { timeoutMs, meta });
    if (reply.status >= 200 && reply.status < 300) {
      await io.out(reply.body);
      return EXIT.ok;
    }
    io.err(
      `ep call: status ${reply.status}: ${
        escapeControls(new TextDecoder().decode(reply.body).trim())
      }`,
    );
    return EXIT.error;
  } catch (err) {
    // The message may be the server's (an ERROR frame): shown escaped.
    io.err(`ep call: ${escapeControls((err as Error).message)}`);
    if (err instanceof JobError) {
      switch (err.kind) {
        case "timeout":
          return EXIT.timeout;
        case "overloaded":
          return EXIT.overloaded;
        case "no_service":
          return EXIT.noService;
        case "worker_lost":
          return EXIT.workerLost;
      }
    }
    if (err instanceof ConnectionClosedError) return EXIT.error;
    return EXIT.error;
  } finally {
    client.close();
  }
}

/**
 * The exit code for an HTTP status and its reason body (ep answers errors with a one-line
 * `text/plain` reason: `No service "x"`, `Queue for "x" is full`).
 */
function httpExit(status: number, reason: string): number {
  if (status >= 200 && status < 300) return EXIT.ok;
  if (status === 504) return EXIT.timeout;
  if (status === 502) return EXIT.workerLost;
  if (status === 503) {
    if (/^no service/i.test(reason)) return EXIT.noService;
    if (/full|overload/i.test(reason)) return EXIT.overloaded;
  }
  return EXIT.error;
}

async function callHttp(
  io: CallIo,
  addr: string,
  service: string,
  body: Uint8Array | null,
  headers: [string, string][],
  timeoutMs: number,
): Promise<number> {
  let t;
  try {
    t = await tcpConnect(addr);
  } catch (err) {
    return connectFailure(io, addr, err);
  }
  const method = body === null ? "GET" : "POST";
  const lines = [`${method} /${service} HTTP/1.1`, `host: ${addr}`, `ep-timeout: ${timeoutMs}`];
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  if (body !== null) lines.push(`content-length: ${body.length}`);
  lines.push("connection: close", "", "");
  const head = new TextEncoder().encode(lines.join("\r\n"));
  const out = await new Promise<{ status: number; body: Uint8Array } | Error>((resolve) => {
    const timer = setTimeout(
      () => resolve(new JobError(103, `No answer within ${timeoutMs} ms`)),
      // The server answers 504 at the deadline; allow a little for that answer to come.
      timeoutMs + Math.min(1_000, 100 + timeoutMs / 10),
    );
    let done = false;
    let ended = false;
    const complete = (r: { status: number; body: Uint8Array } | Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    // The strict response parser (protocol/http_response_parser.ts): Content-Length,
    // chunked or close-delimited bodies, interim 100s skipped.
    const parser = new HttpResponseParser({
      response: (r) => complete({ status: r.status, body: r.body.slice() }),
      error: (e) => complete(ended ? new ConnectionClosedError(e.message, { cause: e }) : e),
    });
    parser.sent(method);
    t.start({
      data(chunk) {
        parser.push(chunk);
      },
      end() {
        ended = true;
        parser.end();
      },
    });
    t.write(head);
    if (body !== null && body.length > 0) t.write(body);
  });
  t.close();
  if (out instanceof Error) {
    io.err(`ep call: ${escapeControls(out.message)}`);
    return out instanceof JobError ? EXIT.timeout : EXIT.error;
  }
  if (out.status >= 200 && out.status < 300) {
    await io.out(out.body);
    return EXIT.ok;
  }
  const reason = new TextDecoder().decode(out.body).trim().split("\n")[0];
  io.err(`ep call: HTTP ${out.status}: ${escapeControls(reason)}`);
  return httpExit(out.status, reason);
}

/** An OS message ("Connection refused (os error 111)") after a colon. */
function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

async function writeAll(bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
}
