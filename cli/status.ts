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
  let stats: unknown;
  let client;
  try {
    client = await connect(addr, {
      token: values["status-token"] ?? values.token ?? Deno.env.get("EP_STATUS_TOKEN") ??
        Deno.env.get("EP_TOKEN"),
      connectTimeoutMs: timeoutMs,
      name: "ep-status",
    });
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
  ));
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
  ));
  return out.join("\n");
}

const LEFT_COLUMNS = new Set(["SERVICE", "WORKER", "ADDRESS", "SERVICES", "STATE", "LAST SEEN"]);

function table(headers: string[], rows: string[][], empty: string): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => {
      const left = LEFT_COLUMNS.has(headers[i]);
      if (i === cells.length - 1 && left) return c;
      return left ? c.padEnd(widths[i]) : c.padStart(widths[i]);
    }).join("  ");
  const lines = [line(headers)];
  if (rows.length === 0) lines.push(empty);
  for (const r of rows) lines.push(line(r));
  return lines.join("\n");
}

function obj(v: unknown): Record<string, unknown> | null {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? v as Record<string, unknown>
    : null;
}

function records(v: unknown): Record<string, unknown>[] {
  return arr(v).map(obj).filter((x): x is Record<string, unknown> => x !== null);
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** A string of the answer, as shown: every string in it may come from a peer. */
function str(v: unknown): string | null {
  return typeof v === "string" ? escapeControls(v) : null;
}

function num(v: unknown): number {
  return typeof v === "number" ? v : NaN;
}

function int(n: number): string {
  return n === n ? Math.round(n).toLocaleString("en-US") : "-";
}

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
