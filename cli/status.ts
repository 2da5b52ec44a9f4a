/**
 * `ep status [--addr host:port] [--token t] [--json]`: asks a balancer for its statistics
 * over EP (`STATS_REQUEST`, the same data as the status page) and prints them as tables.
 * The token, presented in HELLO, is the balancer's status token (`--status-token`); the
 * balancer applies the access rule of its `/_ep/stats` page to it.
 *
 * Everything the balancer reports (names, addresses, messages) is shown through
 * `escapeControls`: a worker cannot write escape sequences to the operator's terminal.
 *
 * @module
 */
import { connect } from "../core/net/client.ts";
import { escapeControls, inertJson } from "../core/escape.ts";
import { arr, int, num, obj, records, str, table } from "./_answer_table.ts";
import {
  ADDRESS_FLAGS,
  CLIENT_FLAGS,
  clientAddr,
  HELP_FLAG,
  JSON_FLAG,
  parseFlags,
  parseMs,
  ROLE_FLAGS,
} from "./flags.ts";

const USAGE = `Usage: ep status [options]

Prints a balancer's services, workers and totals (the data of its /_ep/ page), read over EP.

Options:
  --addr <host:port>   balancer to ask (default $EP_ADDR, else --host/$EP_HOST and
                       --port/$EP_PORT, else 127.0.0.1:7070)
  --port <n>, --host <h>
                       the balancer's port and host, when no --addr is given
  --status-token <t>, --token <t>
                       the balancer's status token, sent in HELLO
                       (default $EP_STATUS_TOKEN, else $EP_TOKEN)
  --timeout <ms>       give up after this long (default 5000)
  --json               print the raw JSON instead of tables
  --watch              refresh every second (like top) until Ctrl-C
  --count <n>          with --watch: stop after n refreshes
  -h, --help           print this help
`;

/**
 * Runs `ep status` with its arguments and returns the exit code: 0 printed, 1 the balancer
 * could not be reached or answered badly, 2 usage error.
 *
 * @example
 * ```ts ignore
 * import { statusMain } from "./status.ts";
 * Deno.exit(await statusMain(["--addr", "127.0.0.1:7070"]));
 * ```
 */
export async function statusMain(args: string[]): Promise<number> {
  let values;
  try {
    values = parseFlags(args, {
      ...CLIENT_FLAGS,
      ...ADDRESS_FLAGS,
      "status-token": ROLE_FLAGS["status-token"],
      ...JSON_FLAG,
      ...HELP_FLAG,
      watch: { type: "boolean" },
      count: { type: "string" },
    }, false).values;
  } catch (err) {
    console.error(`ep status: ${(err as Error).message} (see ep status --help)`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let addr: string;
  let timeoutMs: number;
  try {
    addr = clientAddr(values);
    timeoutMs = values.timeout === undefined ? 5_000 : parseMs(values.timeout, "--timeout");
  } catch (err) {
    console.error(`ep status: ${(err as Error).message}`);
    return 2;
  }
  const token = values["status-token"] ?? values.token ?? Deno.env.get("EP_STATUS_TOKEN") ??
    Deno.env.get("EP_TOKEN");
  if (values.watch) {
    const count = values.count === undefined ? Infinity : Number(values.count);
    if (!(Number.isInteger(count) && count > 0) && count !== Infinity) {
      console.error(`ep status: invalid --count "${escapeControls(String(values.count))}"`);
      return 2;
    }
    return await watch(addr, token, timeoutMs, count, values.json ?? false);
  }
  if (values.count !== undefined) {
    console.error("ep status: --count needs --watch");
    return 2;
  }
  let stats: unknown;
  let client;
  try {
    client = await connect(addr, { token, connectTimeoutMs: timeoutMs, name: "ep-status" });
    stats = await client.stats(timeoutMs);
  } catch (err) {
    console.error(
      `ep status: cannot read stats from ${addr}: ${escapeControls((err as Error).message)}`,
    );
    return 1;
  } finally {
    client?.close();
  }
  if (values.json) {
    console.log(inertJson(JSON.stringify(stats, null, 2)));
    return 0;
  }
  if (typeof stats !== "object" || stats === null) {
    console.error(`ep status: ${addr} answered something that is not stats`);
    return 1;
  }
  console.log(renderStatus(stats as Record<string, unknown>, addr));
  return 0;
}

/** Clears the screen and moves the cursor home (ANSI), before each refresh of `--watch`. */
const CLEAR = "\x1b[H\x1b[2J";

/**
 * `ep status --watch`: redraws the status every second (one connection, opened again when
 * it is lost; a failed read is shown in place of the tables) until SIGINT or SIGTERM, or
 * `count` refreshes. Returns the exit code (0).
 */
async function watch(
  addr: string,
  token: string | undefined,
  timeoutMs: number,
  count: number,
  json: boolean,
): Promise<number> {
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => stop = resolve);
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, stop);
  let client: Awaited<ReturnType<typeof connect>> | null = null;
  try {
    for (let n = 0; n < count; n++) {
      const started = Date.now();
      let text: string;
      try {
        client ??= await connect(addr, { token, connectTimeoutMs: timeoutMs, name: "ep-status" });
        const stats = await client.stats(timeoutMs);
        text = json
          ? inertJson(JSON.stringify(stats))
          : typeof stats === "object" && stats !== null
          ? renderStatus(stats as Record<string, unknown>, addr)
          : `${addr} answered something that is not stats`;
      } catch (err) {
        client?.close();
        client = null;
        text = `cannot read stats from ${addr}: ${escapeControls((err as Error).message)}`;
      }
      const stamp = new Date().toLocaleTimeString("en-GB");
      console.log(
        `${json ? "" : CLEAR}ep status --watch · ${stamp} · every 1 s · Ctrl-C stops\n${text}`,
      );
      if (n + 1 >= count) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const next = new Promise<"tick">((r) => {
        timer = setTimeout(() => r("tick"), Math.max(0, 1000 - (Date.now() - started)));
      });
      const why = await Promise.race([next, stopped.then(() => "stop" as const)]);
      clearTimeout(timer);
      if (why === "stop") break;
    }
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, stop);
    client?.close();
  }
  return 0;
}

/**
 * Renders a stats answer (the monitor's snapshot, or a bare `Balancer.stats()`) as text
 * tables: a summary line, services, workers. Missing fields print as `-`.
 *
 * @example
 * ```ts
 * import { renderStatus } from "./status.ts";
 * const text = renderStatus({
 *   uptimeMs: 5000,
 *   services: [{ name: "echo", queued: 0, providers: 1, slots: 2, busy: 1 }],
 *   providers: [],
 * }, "127.0.0.1:7070");
 * console.assert(text.includes("echo"));
 * ```
 */
export function renderStatus(stats: Record<string, unknown>, addr: string): string {
  const out: string[] = [];
  const totals = obj(stats.totals);
  const version = str(stats.version);
  const head = [
    `ep${version ? ` ${version}` : ""} at ${addr}`,
    `up ${duration(num(stats.uptimeMs))}`,
  ];
  if (typeof stats.ready === "boolean") head.push(stats.ready ? "ready" : "not ready");
  const services = records(stats.services);
  const providers = records(stats.providers);
  head.push(`${providers.length} worker${providers.length === 1 ? "" : "s"}`);
  if (totals) {
    head.push(`${fixed(num(totals.rate))} jobs/s`);
    head.push(`${int(num(totals.queued))} queued`);
    head.push(`${int(num(totals.busy))}/${int(num(totals.slots))} slots busy`);
  }
  out.push(head.join(" · "));
  if (totals) {
    out.push(
      `jobs ${int(num(totals.jobs))} (${int(num(totals.ok))} ok, ${
        int(num(totals.failed))
      } failed) · ${int(num(totals.redelivered))} redelivered`,
    );
  }
  out.push("");
  const serviceRows = services.map((s) => {
    const outcomes = obj(s.outcomes) ?? obj(s.counters);
    let failed = NaN;
    if (outcomes) {
      failed = 0;
      for (const [k, v] of Object.entries(outcomes)) {
        if (k !== "ok" && k !== "redelivered" && typeof v === "number") failed += v;
      }
    }
    const wait = obj(s.queueWaitMs);
    const run = obj(s.serviceMs);
    return [
      str(s.name) ?? "?",
      int(num(s.queued)),
      ms(wait?.p50),
      ms(wait?.p99),
      ms(run?.p50),
      ms(run?.p99),
      fixed(num(s.rate)),
      `${int(num(s.busy))}/${int(num(s.slots))}`,
      int(num(s.providers)),
      int(num(outcomes?.ok)),
      int(failed),
    ];
  });
  // Jobs for names the balancer does not know (mistyped paths): one row.
  const unknown = obj(stats.unknownServices);
  if (unknown) {
    const o = obj(unknown.outcomes);
    serviceRows.push([
      "(unknown services)",
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      int(num(o?.ok)),
      int(num(unknown.jobs) - (num(o?.ok) || 0)),
    ]);
  }
  out.push(table(
    [
      "SERVICE",
      "QUEUE",
      "WAIT P50",
      "WAIT P99",
      "RUN P50",
      "RUN P99",
      "JOBS/S",
      "BUSY",
      "WORKERS",
      "OK",
      "FAILED",
    ],
    serviceRows,
    "(no services)",
    LEFT_COLUMNS,
  ));
  // What the failures were, by outcome (timeout, overloaded, worker_lost, …).
  const failures: string[] = [];
  for (const s of [...services, ...(unknown ? [{ name: "(unknown services)", ...unknown }] : [])]) {
    const o = obj(s.outcomes);
    if (!o) continue;
    const parts = Object.entries(o)
      .filter(([k, v]) => k !== "ok" && typeof v === "number" && v > 0)
      .map(([k, v]) => `${escapeControls(k)} ${int(v as number)}`);
    if (parts.length) failures.push(`  ${str(s.name) ?? "?"}: ${parts.join(", ")}`);
  }
  if (failures.length) out.push("failed by outcome:", ...failures);
  if (unknown) {
    const names = records(unknown.names).map((n) => `${str(n.name) ?? "?"} ${int(num(n.jobs))}`);
    const more = num(unknown.more);
    out.push(
      `unknown services asked for: ${names.join(", ")}${more > 0 ? ` and ${more} more` : ""}`,
    );
  }
  out.push("");
  const providerRows = providers.map((p) => {
    const name = str(p.name) ?? "?";
    const kind = str(p.kind);
    const lastSeen = num(p.lastSeenMsAgo);
    return [
      kind === "local" ? name : str(p.label) ?? str(p.address) ?? name,
      str(p.address) ?? "-",
      arr(p.services).map((x) => escapeControls(String(x))).join(","),
      `${int(num(p.busy))}/${int(num(p.slots))}`,
      kind === "local" ? "in process" : lastSeen === lastSeen ? `${duration(lastSeen)} ago` : "-",
      str(p.state) ?? (p.draining === true ? "draining" : "ready"),
    ];
  });
  out.push(table(
    ["WORKER", "ADDRESS", "SERVICES", "BUSY", "LAST SEEN", "STATE"],
    providerRows,
    "(no workers)",
    LEFT_COLUMNS,
  ));
  return out.join("\n");
}

const LEFT_COLUMNS = new Set(["SERVICE", "WORKER", "ADDRESS", "SERVICES", "STATE", "LAST SEEN"]);

function fixed(n: number): string {
  if (n !== n) return "-";
  return n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(n >= 10 ? 1 : 2);
}

function ms(v: unknown): string {
  if (typeof v !== "number") return "-";
  if (v < 1) return `${Math.round(v * 1000)} µs`;
  if (v < 10) return `${v.toFixed(2)} ms`;
  if (v < 1000) return `${Math.round(v)} ms`;
  return `${(v / 1000).toFixed(2)} s`;
}

function duration(msValue: number): string {
  if (msValue !== msValue) return "-";
  if (msValue < 1000) return `${(msValue / 1000).toFixed(1)}s`;
  let s = Math.floor(msValue / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}
