/**
 * The runtime admin verbs (HAProxy's runtime API is the model), over EP ADMIN frames
 * (SPEC.md §6.12) to a balancer:
 *
 * ```
 * ep workers                      the workers: state, slots, ok/failed, last error
 * ep drain <worker> [--grace ms]  no more jobs; held ones finish (taken back after the grace)
 * ep disable <worker>             out of rotation at once (held jobs finish)
 * ep enable <worker>              back in rotation
 * ep set <service> max_queue <n>  the service's queue bound (`default`: the balancer's)
 * ep errors [--limit n]           the last errors, with the request ids clients got
 * ep services                     the services, with their descriptions and versions
 * ```
 *
 * A worker is named the way `ep workers` shows it: its name (HELLO name), its address, or
 * `local`. The token is the balancer's status token (`--status-token`), sent in HELLO;
 * the balancer applies the access rule of its status pages. Everything the balancer reports
 * is printed through `escapeControls` (names and messages may come from peers).
 *
 * @module
 */
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/errors.ts";
import { escapeControls, inertJson } from "../core/escape.ts";
import { arr, int, type Json, num, obj, records, str, table } from "./_answer_table.ts";
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

/** The admin verbs `ep` dispatches to {@linkcode adminMain}. */
export const ADMIN_VERBS: ReadonlySet<string> = new Set([
  "workers",
  "drain",
  "disable",
  "enable",
  "set",
  "errors",
  "services",
]);

const USAGE = `Usage: ep <verb> [arguments] [options]

A balancer's runtime admin API, over EP:
  ep workers                      list the workers: state, slots, ok/failed jobs, last error
  ep drain <worker> [--grace ms]  give the worker no more jobs; those it holds finish (with
                                  --grace, those still held after it are redelivered)
  ep disable <worker>             take the worker out of rotation (held jobs finish)
  ep enable <worker>              put a drained or disabled worker back in rotation
  ep set <service> max_queue <n>  bound the service's queue (n, or "default")
  ep errors [--limit n]           the last errors (default 20), with their request ids
  ep services                     the services, described (description, version)

A worker is named as "ep workers" shows it: its name, its address (host:port), or "local".

Options:
  --addr <host:port>   balancer to ask (default $EP_ADDR, else --host/$EP_HOST and
                       --port/$EP_PORT, else 127.0.0.1:7070)
  --port <n>, --host <h>
                       the balancer's port and host, when no --addr is given
  --status-token <t>, --token <t>
                       the balancer's status token, sent in HELLO
                       (default $EP_STATUS_TOKEN, else $EP_TOKEN)
  --timeout <ms>       give up after this long (default 5000)
  --json               print the balancer's JSON answer
  -h, --help           print this help
`;

/**
 * Runs one admin verb with its arguments and returns the exit code: 0 done, 1 the balancer
 * could not be reached or refused (an unknown worker, …), 2 usage error.
 *
 * @example
 * ```ts ignore
 * import { adminMain } from "./admin.ts";
 * Deno.exit(await adminMain("drain", ["w1", "--grace", "30000"]));
 * ```
 */
export async function adminMain(verb: string, args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseFlags(args, {
      ...CLIENT_FLAGS,
      ...ADDRESS_FLAGS,
      "status-token": ROLE_FLAGS["status-token"],
      ...JSON_FLAG,
      ...HELP_FLAG,
      grace: { type: "string" },
      limit: { type: "string" },
    });
  } catch (err) {
    console.error(`ep ${verb}: ${(err as Error).message} (ep ${verb} --help)`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let request: Json;
  try {
    request = requestOf(verb, positionals, values);
  } catch (err) {
    console.error(`ep ${verb}: ${(err as Error).message} (ep ${verb} --help)`);
    return 2;
  }
  let addr: string;
  let timeoutMs: number;
  try {
    addr = clientAddr(values);
    timeoutMs = values.timeout === undefined ? 5_000 : parseMs(values.timeout, "--timeout");
  } catch (err) {
    console.error(`ep ${verb}: ${(err as Error).message}`);
    return 2;
  }
  let answer: unknown;
  let client;
  try {
    client = await connect(addr, {
      token: values["status-token"] ?? values.token ?? Deno.env.get("EP_STATUS_TOKEN") ??
        Deno.env.get("EP_TOKEN"),
      connectTimeoutMs: timeoutMs,
      name: `ep-${verb}`,
    });
    answer = await client.admin(request, timeoutMs);
  } catch (err) {
    const e = err as Error;
    const why = e instanceof JobError && e.kind === "unexpected_frame"
      ? "it has no admin API (an older ep?)"
      : escapeControls(e.message);
    console.error(`ep ${verb}: ${addr}: ${why}`);
    return 1;
  } finally {
    client?.close();
  }
  if (values.json) {
    console.log(inertJson(JSON.stringify(answer, null, 2)));
    return 0;
  }
  console.log(renderAdmin(verb, obj(answer) ?? {}));
  return 0;
}

/** The ADMIN request a verb and its arguments stand for; throws a usage error. */
function requestOf(
  verb: string,
  positionals: string[],
  values: { grace?: string; limit?: string },
): Json {
  const want = (n: number, what: string) => {
    if (positionals.length !== n) {
      throw new RangeError(
        n === 0 ? `takes no arguments, got "${positionals.join(" ")}"` : `expects ${what}`,
      );
    }
  };
  const only = (flag: string | undefined, name: string, allowed: string[]) => {
    if (flag !== undefined && !allowed.includes(verb)) {
      throw new RangeError(`--${name} is an option of ${allowed.map((v) => `ep ${v}`).join(", ")}`);
    }
  };
  only(values.grace, "grace", ["drain"]);
  only(values.limit, "limit", ["errors"]);
  switch (verb) {
    case "workers":
    case "services":
      want(0, "");
      return { op: verb };
    case "errors": {
      want(0, "");
      const limit = values.limit === undefined ? undefined : wholeNumber(values.limit, "--limit");
      return limit === undefined ? { op: "errors" } : { op: "errors", limit };
    }
    case "drain":
    case "disable":
    case "enable": {
      want(1, "a worker: its name, its address or local");
      const req: Json = { op: verb, worker: positionals[0] };
      if (values.grace !== undefined) req.grace_ms = wholeNumber(values.grace, "--grace");
      return req;
    }
    default: { // set
      want(3, "<service> max_queue <n | default>");
      const [service, key, value] = positionals;
      if (key !== "max_queue") {
        throw new RangeError(`unknown setting "${escapeControls(key)}": one of max_queue`);
      }
      return {
        op: "set",
        service,
        key,
        value: value === "default" ? null : wholeNumber(value, "max_queue"),
      };
    }
  }
}

function wholeNumber(text: string, what: string): number {
  if (!/^\d{1,10}$/.test(text)) {
    throw new RangeError(`invalid ${what} "${escapeControls(text)}": a whole number`);
  }
  return Number(text);
}

/**
 * Renders an admin answer as text: a table for `workers`, `errors` and `services`, one line
 * for the others.
 *
 * @example
 * ```ts
 * import { renderAdmin } from "./admin.ts";
 * const text = renderAdmin("disable", {
 *   worker: { name: "worker 10.0.0.5:1 (w1)", kind: "remote", label: "w1", address: "10.0.0.5:1", state: "disabled" },
 * });
 * console.assert(text === "w1 (10.0.0.5:1): disabled");
 * ```
 */
export function renderAdmin(verb: string, answer: Json): string {
  switch (verb) {
    case "workers":
      return workersTable(records(answer.workers));
    case "errors":
      return errorsTable(records(answer.errors));
    case "services":
      return servicesTable(records(answer.services));
    case "set":
      return `${str(answer.service) ?? "?"}: max_queue ${int(num(answer.value))}`;
    default: {
      const w = obj(answer.worker);
      if (!w) return "(no such worker any more)";
      return `${workerName(w)}${w.kind === "local" ? "" : ` (${str(w.address) ?? "?"})`}: ${
        str(w.state) ?? "?"
      }`;
    }
  }
}

function workerName(w: Json): string {
  if (w.kind === "local") return str(w.name) ?? "local";
  return str(w.label) ?? str(w.address) ?? str(w.name) ?? "?";
}

function workersTable(workers: Json[]): string {
  const now = Date.now();
  const rows = workers.map((w) => {
    const jobs = obj(w.jobs);
    const last = obj(w.lastError);
    const history = records(w.history);
    const since = num(history.at(-1)?.at);
    return [
      workerName(w),
      w.kind === "local" ? "local" : str(w.address) ?? "-",
      str(w.state) ?? "-",
      since === since ? `${ago(now - since)}` : "-",
      `${int(num(w.busy))}/${int(num(w.slots))}`,
      int(num(jobs?.ok)),
      int(num(jobs?.failed)),
      last ? `${str(last.kind) ?? "?"} ${str(last.requestId) ?? ""}`.trim() : "-",
      arr(w.services).map((s) => escapeControls(String(s))).join(","),
    ];
  });
  return table(
    ["WORKER", "ADDRESS", "STATE", "SINCE", "BUSY", "OK", "FAILED", "LAST ERROR", "SERVICES"],
    rows,
    "(no workers)",
    new Set(["WORKER", "ADDRESS", "STATE", "LAST ERROR", "SERVICES"]),
  );
}

function errorsTable(errors: Json[]): string {
  const rows = errors.map((e) => {
    const at = num(e.at);
    return [
      at === at ? new Date(at).toISOString().slice(11, 23) : "-",
      str(e.service) ?? "-",
      str(e.kind) ?? "-",
      str(e.requestId) ?? "-",
      e.worker === null ? "-" : str(e.worker)?.replace(/^worker /, "") ?? "-",
      (str(e.message) ?? "") + (typeof e.detail === "string" ? ` [${str(e.detail)}]` : ""),
    ];
  });
  return table(
    ["TIME (UTC)", "SERVICE", "ERROR", "REQUEST ID", "WORKER", "MESSAGE"],
    rows,
    "(no errors)",
    new Set(["TIME (UTC)", "SERVICE", "ERROR", "REQUEST ID", "WORKER", "MESSAGE"]),
  );
}

function servicesTable(services: Json[]): string {
  const rows = services.map((s) => {
    const versions = arr(s.versions).map((v) => escapeControls(String(v)));
    return [
      str(s.name) ?? "?",
      str(s.version) ?? (versions.length ? versions.join(",") : "-"),
      int(arr(s.instances).length),
      int(num(s.queued)),
      int(num(s.maxQueue)),
      str(s.description) ?? "-",
    ];
  });
  return table(
    ["SERVICE", "VERSION", "WORKERS", "QUEUE", "MAX QUEUE", "DESCRIPTION"],
    rows,
    "(no services)",
    new Set(["SERVICE", "VERSION", "DESCRIPTION"]),
  );
}

function ago(ms: number): string {
  if (!(ms >= 0)) return "-";
  let s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return `${m}m ${String(s).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}
