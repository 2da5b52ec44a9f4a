/**
 * The runtime admin API of a balancer (HAProxy's runtime API is the model): list workers,
 * services and the last errors; drain, disable or enable a worker; set a service's queue
 * bound. One {@linkcode Admin} serves it over HTTP (`/_ep/admin/<op>`, `/_ep/services`, see
 * `endpoints.ts`) and over EP (ADMIN frames, SPEC.md §6.12), both under the status access
 * rule (`core/net/access.ts`).
 *
 * A request is a JSON object: `{"op": "drain", "worker": "w1", "grace_ms": 30000}`. A worker
 * is named the way stats show it: its full name (`worker 10.0.0.5:40412 (w1)`), its
 * address (`10.0.0.5:40412`), or its HELLO name (`w1`) when exactly one worker has it;
 * `local` names this process's handler threads. An unknown name, an ambiguous one, an
 * unknown service, operation or argument is refused with a message that says which.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Provider } from "../balancer/provider.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { AdminRequestError, UnknownServiceError, UnknownWorkerError } from "../errors.ts";
import { escapeControls } from "../escape.ts";
import { parseProviderName } from "./_provider_name.ts";
import type { RecentError } from "./recent_errors.ts";
import type { ServiceInfo, StatsSnapshot } from "./status_snapshot.ts";

const log = getLogger(["ep", "admin"]);

/**
 * The operations, each with its arguments; those that change something (`mutates`) need
 * POST over HTTP.
 *
 * @example
 * ```ts
 * import { ADMIN_OPERATIONS } from "./admin.ts";
 * console.assert(ADMIN_OPERATIONS.drain.mutates && !ADMIN_OPERATIONS.workers.mutates);
 * ```
 */
export const ADMIN_OPERATIONS: Readonly<
  Record<string, { mutates: boolean; args: readonly string[] }>
> = Object.freeze({
  workers: { mutates: false, args: [] },
  services: { mutates: false, args: [] },
  errors: { mutates: false, args: ["limit"] },
  drain: { mutates: true, args: ["worker", "grace_ms"] },
  disable: { mutates: true, args: ["worker"] },
  enable: { mutates: true, args: ["worker"] },
  set: { mutates: true, args: ["service", "key", "value"] },
});

/** The balancer's admin operations, as {@linkcode Admin} uses them (`Balancer` has them). */
export interface AdminBalancer {
  /** The providers attached. */
  providerList(): Provider[];
  /** Takes a provider out of rotation. */
  disable(p: Provider): void;
  /** Puts it back. */
  enable(p: Provider): void;
  /** Drains it, with an optional grace. */
  drain(p: Provider, graceMs?: number): void;
  /** Sets a service's queue bound (null: the default). */
  setMaxQueue(service: string, max: number | null): void;
}

/** What {@linkcode Admin} reads and acts on (a `Monitor` is one). */
export interface AdminSource {
  /** The balancer, once attached. */
  readonly balancer: AdminBalancer | null;
  /** The status data (its providers are the `workers` answer). */
  snapshot(options: { series?: boolean }): StatsSnapshot;
  /** The last errors, newest first. */
  recentErrors(limit: number): RecentError[];
  /** The services, described. */
  services(): ServiceInfo[];
  /** Told after an operation changed a worker's state, so its history shows it at once. */
  changed?(): void;
}

/**
 * How an admin request ended: its result, or a refusal with the HTTP status and the EP
 * error code it maps to.
 *
 * @example
 * ```ts
 * import type { AdminOutcome } from "./admin.ts";
 * const refused: AdminOutcome = { ok: false, status: 404, code: 100, message: 'No worker "w9" is attached' };
 * console.assert(!refused.ok);
 * ```
 */
export type AdminOutcome =
  | { ok: true; result: Record<string, unknown> }
  | { ok: false; status: number; code: number; message: string };

const MAX_U32 = 0xffff_ffff;

/**
 * Carries out admin requests on a balancer.
 *
 * @example
 * ```ts ignore
 * import { Admin } from "./admin.ts";
 * const admin = new Admin(monitor);
 * admin.run({ op: "disable", worker: "w1" });
 * console.log(admin.answer({ op: "workers" }));
 * ```
 */
export class Admin {
  #source: AdminSource;

  /** An admin API over `source`. */
  constructor(source: AdminSource) {
    this.#source = source;
  }

  /**
   * Carries out one request and returns its result.
   *
   * @throws {AdminRequestError} not an object, an unknown operation or argument, a bad value.
   * @throws {UnknownWorkerError} no worker (or several) has the name given.
   * @throws {UnknownServiceError} no provider serves or served the service given.
   */
  run(request: unknown): Record<string, unknown> {
    if (typeof request !== "object" || request === null || Array.isArray(request)) {
      throw new AdminRequestError('An admin request is a JSON object with an "op"');
    }
    const req = request as Record<string, unknown>;
    const op = req.op;
    const spec = typeof op === "string" && Object.hasOwn(ADMIN_OPERATIONS, op)
      ? ADMIN_OPERATIONS[op]
      : undefined;
    if (!spec) {
      throw new AdminRequestError(
        `Unknown admin operation ${quote(op)}: one of ${Object.keys(ADMIN_OPERATIONS).join(", ")}`,
      );
    }
    for (const k of Object.keys(req)) {
      if (k !== "op" && !spec.args.includes(k)) {
        throw new AdminRequestError(
          `Unknown argument ${quote(k)} of "${op}"` +
            (spec.args.length ? `: it takes ${spec.args.join(", ")}` : ": it takes none"),
        );
      }
    }
    switch (op) {
      case "workers":
        return { workers: this.#snapshot().providers };
      case "services":
        return { services: this.#source.services() };
      case "errors": {
        const limit = req.limit === undefined ? 20 : integer(req.limit, "limit", 1, 1000);
        return { errors: this.#source.recentErrors(limit) };
      }
      case "drain":
      case "disable":
      case "enable": {
        const p = this.findWorker(req.worker);
        const b = this.#balancer();
        if (op === "drain") {
          const grace = req.grace_ms === undefined || req.grace_ms === null
            ? undefined
            : integer(req.grace_ms, "grace_ms", 0, MAX_U32);
          b.drain(p, grace);
        } else if (op === "disable") {
          b.disable(p);
        } else {
          b.enable(p);
        }
        this.#source.changed?.();
        return { worker: this.#snapshot().providers.find((w) => w.name === p.name) ?? null };
      }
      default: { // set
        const service = req.service;
        if (typeof service !== "string" || service === "") {
          throw new AdminRequestError(`"set" needs a "service" name, got ${quote(service)}`);
        }
        if (req.key !== "max_queue") {
          throw new AdminRequestError(`Unknown setting ${quote(req.key)}: one of max_queue`);
        }
        const value = req.value === null ? null : integer(req.value, "value", 0, MAX_U32);
        this.#balancer().setMaxQueue(service, value);
        const s = this.#snapshot().services.find((x) => x.name === service);
        return { service, key: "max_queue", value: s?.maxQueue ?? value };
      }
    }
  }

  /** Carries out one request; a refusal is an outcome, not a throw (unexpected errors are logged). */
  answer(request: unknown): AdminOutcome {
    try {
      return { ok: true, result: this.run(request) };
    } catch (err) {
      return refusal(err);
    }
  }

  /** {@linkcode Admin.answer} for the JSON text of an EP ADMIN frame. */
  answerJson(text: string): AdminOutcome {
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch {
      return refusal(new AdminRequestError('An admin request is a JSON object with an "op"'));
    }
    return this.answer(request);
  }

  /**
   * The provider a worker name means (see the module doc).
   *
   * @throws {AdminRequestError} `name` is not a non-empty string.
   * @throws {UnknownWorkerError} no worker has it, or several do.
   */
  findWorker(name: unknown): Provider {
    if (typeof name !== "string" || name === "") {
      throw new AdminRequestError(`A "worker" name is needed, got ${quote(name)}`);
    }
    const all = this.#balancer().providerList().map((p) => {
      const remote = p.name.startsWith("worker ");
      return { p, ...parseProviderName(p.name, remote) };
    });
    let found = all.filter((w) => w.p.name === name);
    if (found.length === 0) found = all.filter((w) => w.kind === "remote" && w.address === name);
    if (found.length === 0) found = all.filter((w) => w.kind === "remote" && w.label === name);
    if (found.length === 0 && name === "local") found = all.filter((w) => w.kind === "local");
    if (found.length === 1) return found[0].p;
    const shown = (w: (typeof all)[number]) =>
      w.kind === "local" ? "local" : w.label ? `${w.label} at ${w.address}` : w.address;
    if (found.length > 1) {
      throw new UnknownWorkerError(
        name,
        `Worker name ${quote(name)} is ambiguous: ${
          list(found.map(shown))
        } have it; name one by its address`,
        { ambiguous: true },
      );
    }
    throw new UnknownWorkerError(
      name,
      `No worker ${quote(name)} is attached` +
        (all.length ? ` (workers: ${list(all.map(shown))})` : " (no workers are)"),
    );
  }

  #balancer(): AdminBalancer {
    const b = this.#source.balancer;
    if (!b) throw new AdminRequestError("The balancer has not started yet");
    return b;
  }

  #snapshot(): StatsSnapshot {
    return this.#source.snapshot({ series: false });
  }
}

/** The refusal an admin error stands for: HTTP status, EP code and the message. */
function refusal(err: unknown): AdminOutcome {
  const code = ErrorCode.BAD_REQUEST;
  if (err instanceof AdminRequestError) {
    return { ok: false, status: 400, code, message: err.message };
  }
  if (err instanceof UnknownWorkerError) {
    return { ok: false, status: err.ambiguous ? 409 : 404, code, message: err.message };
  }
  if (err instanceof UnknownServiceError) {
    return { ok: false, status: 404, code, message: err.message };
  }
  log.error("Admin operation failed unexpectedly: {error}", { error: err });
  return { ok: false, status: 500, code: ErrorCode.INTERNAL, message: "Internal error" };
}

function integer(v: unknown, what: string, min: number, max: number): number {
  if (typeof v === "number" && Number.isInteger(v) && v >= min && v <= max) return v;
  throw new AdminRequestError(`Invalid ${what} ${quote(v)}: an integer from ${min} to ${max}`);
}

/** A value in a message: quoted, control characters escaped, at most 100 characters. */
function quote(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
  const cut = s.length > 100 ? s.slice(0, 100) + "…" : s;
  return `"${escapeControls(cut)}"`;
}

/** Names for a message: the first ten, then how many more. */
function list(names: string[]): string {
  const shown = names.slice(0, 10).map((n) => escapeControls(n));
  return shown.join(", ") + (names.length > 10 ? ` and ${names.length - 10} more` : "");
}
