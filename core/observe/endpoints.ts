/**
 * The `/_ep/` endpoints: what a balancer answers on its own port under the reserved prefix
 * `/_ep/`, from what its monitor knows ({@linkcode StatusSource}; `Monitor.internal` is
 * {@linkcode StatusEndpoints.answer}):
 *
 * | path            | what                                                       | access     |
 * | --------------- | ---------------------------------------------------------- | ---------- |
 * | `/_ep/health`   | liveness and readiness, JSON; 200 ready, 503 not ready     | everyone   |
 * | `/_ep/metrics`  | Prometheus text exposition 0.0.4                           | restricted |
 * | `/_ep/stats`    | the status data as JSON (`?series=0`: without the samples) | restricted |
 * | `/_ep/`         | the status page (one self-contained HTML; polls `stats`)   | restricted |
 * | `/_ep/services` | the services, described (`ep services`)                    | restricted |
 * | `/_ep/admin/…`  | the runtime admin API (`admin.ts`): see below              | restricted |
 *
 * The admin API: `GET /_ep/admin/workers`, `GET /_ep/admin/errors?limit=N`,
 * `GET /_ep/admin/services`, and the operations that change something, which need `POST`
 * with a JSON object body and `content-type: application/json` (a browser sends that
 * cross-site only after a CORS preflight, which ep never grants, so another site's page
 * cannot drive them through the operator's browser): `POST /_ep/admin/drain`
 * (`{"worker": "w1", "grace_ms": 30000}`), `/_ep/admin/disable`, `/_ep/admin/enable`
 * (`{"worker": …}`) and `/_ep/admin/set` (`{"service": "echo", "key": "max_queue",
 * "value": 100}`). A request with an `Origin` naming another host is refused 403. Answers
 * are JSON; refusals a one-line reason: 400 (bad request), 404 (no such worker or service),
 * 409 (a worker name several workers have).
 *
 * Access ("restricted" above), by {@linkcode AccessOptions}:
 * - default: loopback peers only (`127.0.0.0/8`, `::1`); others get 403;
 * - `token`: the token is required from every peer, loopback included, as
 *   `Authorization: Bearer <token>` or `?token=<token>` (the page passes it on to its
 *   polls); a missing or wrong token gets 401;
 * - `public: true` (and no token): everyone.
 *
 * EP `STATS_REQUEST` gets the same JSON (`Monitor.snapshot()`) under the same rule (pass
 * `Monitor.access` as `EpOptions.statsAccess`): the token is HELLO's `token`, and a refused
 * request is answered ERROR `unauthorized`. The rule is one function, `statusAccess` in
 * `core/net/access.ts`.
 *
 * Other `/_ep/...` paths get 404 and methods other than GET and HEAD 405: the endpoints
 * answer the whole prefix, so the balancer's unguarded defaults never do.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Job, JobResult } from "../job.ts";
import type { HealthReport } from "./status_snapshot.ts";
import { ADMIN_OPERATIONS, type AdminOutcome } from "./admin.ts";
import { STATUS_PAGE_HTML } from "./status_page.ts";
import { type AccessOptions, admitted, statusAccess } from "../net/access.ts";

const log = getLogger(["ep", "observe"]);

const enc = new TextEncoder();
const PAGE_BYTES = enc.encode(STATUS_PAGE_HTML);
const NO_STORE: [string, string] = ["cache-control", "no-store"];

/**
 * What the endpoints answer from (a `Monitor`).
 *
 * @example
 * ```ts
 * import type { StatusSource } from "./endpoints.ts";
 * const source: StatusSource = {
 *   access: {},
 *   health: () => ({
 *     status: "ok",
 *     live: true,
 *     ready: true,
 *     checks: {},
 *     uptimeMs: 0,
 *     version: null,
 *   }),
 *   metricsText: () => "",
 *   statsJson: () => "{}",
 * };
 * console.assert(source.health().ready);
 * ```
 */
export interface StatusSource {
  /** The access rule of the page, stats and metrics. */
  readonly access: AccessOptions;
  /** Liveness and readiness: `/_ep/health`. */
  health(): HealthReport;
  /** The Prometheus text exposition: `/_ep/metrics`. */
  metricsText(): string;
  /** The status data as JSON, `series: false` without the samples: `/_ep/stats`. */
  statsJson(options: { series?: boolean }): string;
  /** Carries out an admin request (`/_ep/admin/…`, `/_ep/services`); absent: 404. */
  admin?(request: unknown): AdminOutcome;
}

/**
 * Answers `/_ep/` HTTP requests from a {@linkcode StatusSource} under the access rule, and
 * counts the refusals.
 *
 * @example
 * ```ts
 * import { StatusEndpoints } from "./endpoints.ts";
 * const endpoints = new StatusEndpoints({
 *   access: {},
 *   health: () => ({
 *     status: "ok",
 *     live: true,
 *     ready: true,
 *     checks: {},
 *     uptimeMs: 0,
 *     version: null,
 *   }),
 *   metricsText: () => "ep_up 1\n",
 *   statsJson: () => "{}",
 * });
 * const job = {
 *   service: "",
 *   protocol: "http" as const,
 *   method: "GET",
 *   path: "/_ep/metrics",
 *   query: "",
 *   headers: [],
 *   body: new Uint8Array(0),
 *   deadlineMs: 0,
 *   priority: 0,
 *   remote: "127.0.0.1:4000",
 * };
 * console.assert(endpoints.answer(job).status === 200);
 * console.assert(endpoints.answer({ ...job, remote: "10.0.0.7:4000" }).status === 403);
 * console.assert(endpoints.denied.remote === 1);
 * ```
 */
export class StatusEndpoints {
  #source: StatusSource;
  #denied = { remote: 0, token: 0 };

  /** Creates the endpoints of a source. */
  constructor(source: StatusSource) {
    this.#source = source;
  }

  /** Requests for pages refused, by reason: `remote` (not loopback), `token` (bad token). */
  get denied(): { readonly remote: number; readonly token: number } {
    return this.#denied;
  }

  /**
   * Answers a `/_ep/...` HTTP request: always (404 for an unknown path, 405 for a method
   * other than GET and HEAD), so that the balancer's own defaults never serve unguarded.
   */
  answer(job: Job): JobResult {
    const path = job.path;
    if (path === "/_ep/services" || path.startsWith(ADMIN_PREFIX)) return this.#admin(job);
    const known = path === "/_ep/" || path === "/_ep/health" || path === "/_ep/metrics" ||
      path === "/_ep/stats";
    if (!known) return textResult(404, `No ep endpoint "${path}"`);
    if (job.method !== "GET" && job.method !== "HEAD") {
      return textResult(405, "Only GET and HEAD", [["allow", "GET, HEAD"]]);
    }
    if (path === "/_ep/health") {
      const h = this.#source.health();
      return jsonResult(h.ready ? 200 : 503, JSON.stringify(h));
    }
    const denied = this.#deny(job);
    if (denied) return denied;
    if (path === "/_ep/metrics") {
      return {
        status: 200,
        headers: [["content-type", "text/plain; version=0.0.4; charset=utf-8"], NO_STORE],
        body: this.#source.metricsText(),
      };
    }
    if (path === "/_ep/stats") {
      const series = new URLSearchParams(job.query).get("series") !== "0";
      return jsonResult(200, this.#source.statsJson({ series }));
    }
    return {
      status: 200,
      headers: [
        ["content-type", "text/html; charset=utf-8"],
        NO_STORE,
        [
          "content-security-policy",
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
          "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; " +
          "frame-ancestors 'none'",
        ],
        ["x-content-type-options", "nosniff"],
        ["referrer-policy", "no-referrer"],
      ],
      body: PAGE_BYTES,
    };
  }

  /** `/_ep/admin/<op>` and `/_ep/services`. */
  #admin(job: Job): JobResult {
    const op = job.path === "/_ep/services" ? "services" : job.path.slice(ADMIN_PREFIX.length);
    const spec = Object.hasOwn(ADMIN_OPERATIONS, op) ? ADMIN_OPERATIONS[op] : undefined;
    if (!spec || !this.#source.admin) return textResult(404, `No ep endpoint "${job.path}"`);
    if (spec.mutates ? job.method !== "POST" : job.method !== "GET" && job.method !== "HEAD") {
      const allow = spec.mutates ? "POST" : "GET, HEAD";
      return textResult(405, `Only ${allow.replace(", ", " and ")}`, [["allow", allow]]);
    }
    const denied = this.#deny(job);
    if (denied) return denied;
    let request: Record<string, unknown> = { op };
    if (spec.mutates) {
      const origin = header(job, "origin");
      if (origin !== undefined && !sameHost(origin, header(job, "host"))) {
        return textResult(403, "Cross-origin admin requests are refused");
      }
      const type = header(job, "content-type")?.split(";")[0].trim().toLowerCase();
      if (type !== "application/json") {
        return textResult(
          415,
          "An admin operation needs a JSON body (content-type: application/json)",
        );
      }
      let body: unknown;
      try {
        body = JSON.parse(dec.decode(job.body));
      } catch {
        body = undefined;
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        return textResult(400, "An admin operation's body is a JSON object");
      }
      request = { ...body, op };
    } else if (op === "errors") {
      const limit = new URLSearchParams(job.query).get("limit");
      if (limit !== null) request.limit = /^\d{1,9}$/.test(limit) ? Number(limit) : limit;
    }
    const outcome = this.#source.admin(request);
    if (!outcome.ok) return textResult(outcome.status, outcome.message);
    return jsonResult(200, JSON.stringify(outcome.result));
  }

  /** The refusal for a peer the access rules keep out, or null. */
  #deny(job: Job): JobResult | null {
    const given = bearer(job) ?? new URLSearchParams(job.query).get("token");
    const verdict = statusAccess(this.#source.access, job.remote, given);
    if (admitted(verdict)) return null;
    if (verdict === "unauthorized") {
      this.#denied.token++;
      log.debug("Refused {path} to {remote}: token", { path: job.path, remote: job.remote });
      return textResult(401, "A token is required for ep status pages", [
        ["www-authenticate", 'Bearer realm="ep"'],
      ]);
    }
    this.#denied.remote++;
    log.debug("Refused {path} to {remote}: not loopback", { path: job.path, remote: job.remote });
    return textResult(403, "ep status pages are served to loopback peers only");
  }
}

const ADMIN_PREFIX = "/_ep/admin/";
const dec = new TextDecoder();

function header(job: Job, name: string): string | undefined {
  for (const [k, v] of job.headers) if (k === name) return v;
  return undefined;
}

/** Whether an `Origin` (`http://host:port`) names the host the request was sent to. */
function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host.toLowerCase();
  } catch {
    return false;
  }
}

function bearer(job: Job): string | null {
  for (const [k, v] of job.headers) {
    if (k === "authorization") {
      const m = /^bearer[ \t]+(.+?)[ \t]*$/i.exec(v);
      return m ? m[1] : null;
    }
  }
  return null;
}

function textResult(status: number, text: string, extra: [string, string][] = []): JobResult {
  return {
    status,
    headers: [["content-type", "text/plain; charset=utf-8"], NO_STORE, ...extra],
    body: text + "\n",
  };
}

function jsonResult(status: number, json: string): JobResult {
  return {
    status,
    headers: [["content-type", "application/json"], NO_STORE],
    body: json,
  };
}
