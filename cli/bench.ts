/**
 * `ep bench`: the load generator on the command line (see `loadgen/run_load.ts` for how it
 * measures).
 *
 * @module
 */
import {
  ADDRESS_FLAGS,
  CLIENT_FLAGS,
  clientAddr,
  FAILOVER_FLAGS,
  HELP_FLAG,
  JSON_FLAG,
  parseFlags,
  parseHeaderArg,
  parseRetry,
  parseServers,
  REQUEST_FLAGS,
} from "./flags.ts";
import { quote } from "./errors.ts";
import {
  fmtMs,
  formatResult,
  type LatencyHistogram,
  type LoadOptions,
  type LoadResult,
  type MixEntry,
  parseMix,
  poissonSchedule,
  type Progress,
  renderHtml,
  resultToJson,
  runLoad,
  simulateCentralQueue,
  type Target,
} from "./loadgen/mod.ts";

const USAGE = `ep bench: an open-loop load generator (no coordinated omission)

Usage: ep bench [service] [options]

  service                 the service to load (default sleep)

Load:
  --rate <r>              open loop: Poisson arrivals, r requests/s (default 100)
  --closed <n>            closed loop instead: n requests always in flight
  --duration <s>          seconds to run (default 10)
  --warmup <s>            seconds of unrecorded load first (default 0)
  --mix <ms@p,...>        job times for the sleep service, e.g. 1@0.9,20@0.1 (seeded);
                          sent as the EP body or as ?ms=N over HTTP
  --seed <n>              seed of the arrivals and the mix (default 1)
  --body <text|@file>     request body (without --mix)
  --header <k:v>          header field (HTTP) or metadata (EP); repeatable

Connection:
  --addr <host:port>      server (default $EP_ADDR, else --host/$EP_HOST and
                          --port/$EP_PORT, else 127.0.0.1:7070)
  --port <n>, --host <h>  the server's port and host, when no --addr is given
  --http                  HTTP/1.1 keep-alive, one request per connection at a time
                          (default: EP, pipelined)
  --path <path>           HTTP path (default /<service>)
  --connections <n>       EP connections (default 1); HTTP connections opened before the
                          run (default 16)
  --max-connections <n>   HTTP connection cap; requests beyond it wait (default 1024)
  --timeout <ms>          per-request timeout (default 30000)
  --token <t>             EP token (default $EP_TOKEN)
  --servers <a,b,...>     EP: balancers to fail over across, in this order (instead of
                          --addr); each connection is to one of them at a time
  --retry <n>             EP: send a request again, up to n times with back-off within
                          --timeout, when it failed overloaded, shutting_down,
                          worker_lost or with a lost connection (latency counts every try)

Output:
  --json                  print the result as JSON (with histograms) instead of text
  --html <file>           write a self-contained HTML report with a latency plot
  --ideal <k>             also simulate the ideal central queue with k servers for the
                          same arrivals (needs --mix)
  --quiet                 no progress line

Latency is measured from each request's intended send time. Percentiles are nearest-rank
from histograms with buckets under 0.8 % wide. The generator reports its own send lag
(actual - intended send time) and CPU; a large lag means the generator was the bottleneck.

Exit codes: 0 done, 1 no request succeeded or the server could not be reached, 2 usage.
`;

/**
 * Where `ep bench` writes: the process's standard streams unless a caller (a test) passes
 * its own.
 *
 * @example
 * ```ts
 * import type { BenchIo } from "./bench.ts";
 * const lines: string[] = [];
 * const io: Partial<BenchIo> = { out: (line) => void lines.push(line) };
 * console.assert(typeof io.out === "function");
 * ```
 */
export interface BenchIo {
  /** Receives the result (text or JSON). */
  out(text: string): void;
  /** Receives messages and, when not a terminal, progress lines. */
  err(line: string): void;
  /** Whether progress may be redrawn in place (a terminal). */
  tty: boolean;
}

/**
 * Runs `ep bench` with its arguments and returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { benchMain } from "./bench.ts";
 * Deno.exit(await benchMain(["sleep", "--rate", "500", "--mix", "1@0.9,20@0.1", "--duration", "5"]));
 * ```
 */
export async function benchMain(args: string[], io: Partial<BenchIo> = {}): Promise<number> {
  const out = io.out ?? ((text: string) => console.log(text));
  const err = io.err ?? ((line: string) => console.error(line));
  const tty = io.tty ?? (io.err === undefined && Deno.stderr.isTerminal());
  let parsed;
  try {
    parsed = parseFlags(args, {
      rate: { type: "string" },
      closed: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      mix: { type: "string" },
      seed: { type: "string" },
      body: { type: "string" },
      path: { type: "string" },
      connections: { type: "string" },
      "max-connections": { type: "string" },
      html: { type: "string" },
      ideal: { type: "string" },
      quiet: { type: "boolean" },
      ...CLIENT_FLAGS,
      ...ADDRESS_FLAGS,
      ...REQUEST_FLAGS,
      ...FAILOVER_FLAGS,
      ...JSON_FLAG,
      ...HELP_FLAG,
    });
  } catch (e) {
    err(`ep bench: ${(e as Error).message} (see ep bench --help)`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  if (v.help) {
    out(USAGE);
    return 0;
  }
  const usage = (message: string) => {
    err(`ep bench: ${message}`);
    return 2;
  };
  if (positionals.length > 1) return usage(`Unexpected argument ${quote(positionals[1])}`);
  const num = (name: string, text: string | undefined, fallback: number, min = 0) => {
    if (text === undefined) return fallback;
    const n = /^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(text) ? Number(text) : NaN;
    if (!Number.isFinite(n) || n < min) {
      const least = min === Number.MIN_VALUE ? "more than 0" : `at least ${min}`;
      throw new RangeError(`--${name} ${quote(text)} is not a number ${least}`);
    }
    return n;
  };
  let mix: MixEntry[] | undefined;
  let options: LoadOptions;
  let warmupMs: number;
  let ideal: number;
  try {
    mix = v.mix === undefined ? undefined : parseMix(v.mix);
    const headers: [string, string][] = [];
    for (const h of v.header ?? []) headers.push(parseHeaderArg(h));
    let body: Uint8Array | undefined;
    if (v.body !== undefined) {
      body = v.body.startsWith("@")
        ? await Deno.readFile(v.body.slice(1))
        : new TextEncoder().encode(v.body);
    }
    const servers = parseServers({ servers: v.servers, addr: v.addr });
    const retry = parseRetry(v.retry);
    if (v.http && (v.servers !== undefined || retry !== undefined)) {
      throw new RangeError("--servers and --retry are for EP: drop --http");
    }
    const target: Target = {
      protocol: v.http ? "http" : "ep",
      addr: clientAddr(v),
      servers: v.servers === undefined ? undefined : servers,
      retry,
      service: positionals[0] ?? "sleep",
      path: v.path,
      body,
      headers,
      token: v.token ?? Deno.env.get("EP_TOKEN"),
    };
    const closed = v.closed === undefined ? 0 : num("closed", v.closed, 0, 1);
    if (closed > 0 && v.rate !== undefined) {
      throw new RangeError("Give --rate or --closed, not both");
    }
    options = {
      target,
      mode: closed > 0 ? "closed" : "open",
      rate: num("rate", v.rate, 100, Number.MIN_VALUE),
      durationMs: num("duration", v.duration, 10, 0.001) * 1000,
      seed: num("seed", v.seed, 1),
      mix,
      connections: closed > 0
        ? closed
        : v.connections
        ? num("connections", v.connections, 1, 1)
        : undefined,
      maxConnections: num("max-connections", v["max-connections"], 1024, 1),
      timeoutMs: num("timeout", v.timeout, 30_000, 1),
    };
    warmupMs = num("warmup", v.warmup, 0) * 1000;
    ideal = num("ideal", v.ideal, 0, 1);
    if (ideal > 0 && !mix) throw new RangeError("--ideal needs --mix (job times to simulate)");
    if (ideal > 0 && closed > 0) throw new RangeError("--ideal is for the open loop");
  } catch (e) {
    return usage((e as Error).message);
  }

  const progress = v.quiet ? undefined : (p: Progress) => {
    const line = `${(p.elapsedMs / 1000).toFixed(0)}s  sent ${p.sent}  ${
      p.rate.toFixed(0)
    }/s  in flight ${p.inFlight}  errors ${p.errors}  p99 so far ${fmtMs(p.p99Us)} ms`;
    if (tty) Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${line}`));
    else err(line);
  };

  let result: LoadResult;
  let idealHist: LatencyHistogram | undefined;
  try {
    if (warmupMs > 0) {
      await runLoad({ ...options, durationMs: warmupMs, seed: (options.seed ?? 1) + 1_000_003 });
    }
    if (options.mode === "open") {
      options.schedule = poissonSchedule({
        rate: options.rate!,
        durationMs: options.durationMs!,
        seed: options.seed!,
        mix,
      });
      if (ideal > 0) idealHist = simulateCentralQueue(options.schedule, ideal);
    }
    result = await runLoad({ ...options, onProgress: progress });
  } catch (e) {
    if (progress && tty) err("");
    const message = (e as Error).message;
    // An OS error (refused, unreachable, unknown host) names no address: say which.
    err(
      isOsError(e)
        ? `ep bench: cannot connect to ${options.target.addr}: ${
          message.charAt(0).toLowerCase() + message.slice(1)
        }`
        : `ep bench: ${message}`,
    );
    return 1;
  }
  if (progress && tty) err("");

  if (v.json) {
    const json = resultToJson(result);
    out(JSON.stringify(
      idealHist ? { ...json, ideal: { servers: ideal, latency: idealHist.toJSON() } } : json,
    ));
  } else {
    out(formatResult(result, idealHist));
  }
  if (v.html) {
    const lag = result.sendLag;
    const runs = [{
      name: `${result.target.service} (${result.target.protocol})`,
      latency: result.latency,
      details: [
        `sent ${result.sent} at ${result.sentRate.toFixed(0)}/s, ok ${result.ok}, errors ${
          JSON.stringify(result.errors)
        }`,
        `generator CPU ${result.generator.cpuPercent} %, send lag p99 ${
          lag.percentile(99)
        } µs, connections ${result.generator.connections}, stalls ${result.generator.stalls}`,
      ],
    }];
    if (idealHist) runs.push({ name: "ideal", latency: idealHist, details: [] });
    try {
      await Deno.writeTextFile(
        v.html,
        renderHtml({ title: "ep bench", command: `ep bench ${args.join(" ")}`, runs }),
      );
    } catch (e) {
      err(`ep bench: cannot write ${v.html}: ${(e as Error).message}`);
      return 1;
    }
  }
  return result.ok > 0 ? 0 : 1;
}

/** Whether `e` is one of Deno's OS errors (`Deno.errors.ConnectionRefused`, …). */
function isOsError(e: unknown): boolean {
  return Object.values(Deno.errors).some((c) => e instanceof c);
}
