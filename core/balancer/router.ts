/**
 * Routing: which service a job is for, or whether it is for ep itself.
 *
 * ```
 * HTTP, path under /_ep/           -> an ep endpoint (health, stats, metrics, status page)
 * HTTP, path under a prefix route  -> that route's service (the longest prefix wins)
 * HTTP, a route function is set    -> the service it names (undefined: the default below)
 * otherwise                        -> the service the job names (HTTP: the first path segment)
 * ```
 *
 * `/_ep/` is reserved: no route sends a path under it to a service. What answers there is a
 * list of endpoint handlers, tried in order (the monitor's pages, `core/observe`, then the
 * balancer's own health and stats); a path none of them answers is `no_service`. EP jobs
 * name their service themselves and are never routed.
 *
 * A prefix matches its own path and the paths below it: `/api/v1` takes `/api/v1` and
 * `/api/v1/users`, not `/api/v1x`.
 *
 * @module
 */
import { ErrorCode } from "../../protocol/errors.ts";
import { type Job, JobError, type JobResult } from "../job.ts";

/** The path prefix reserved for ep's own endpoints. */
export const EP_ENDPOINT_PREFIX = "/_ep/";

/** An HTTP path prefix and the service the paths under it go to. */
export interface PrefixRoute {
  /** A path prefix, such as `/api/v1`. */
  readonly prefix: string;
  /** The service for paths under it. */
  readonly service: string;
}

/** Names the service of an HTTP job; `undefined` falls back to the default route. */
export type RouteFunction = (job: Job) => string | undefined | Promise<string | undefined>;

/** Answers an `/_ep/...` request, or returns `undefined` to leave it to the next handler. */
export type EndpointHandler = (job: Job) => JobResult | undefined;

/** Options for {@linkcode Router}. */
export interface RouterOptions {
  /** Prefix routes, in any order: the longest matching prefix wins (ties: the first given). */
  prefixes?: readonly PrefixRoute[];
  /** Consulted for HTTP jobs no prefix route takes. */
  route?: RouteFunction;
  /** Handlers for `/_ep/...` requests, tried in order. */
  endpoints?: readonly EndpointHandler[];
}

/**
 * Maps a job to the service it is for, or to one of ep's own endpoints under `/_ep/`.
 *
 * @example
 * ```ts
 * import { Router } from "./router.ts";
 * import type { Job } from "../job.ts";
 * const router = new Router({
 *   prefixes: [{ prefix: "/api", service: "api" }, { prefix: "/api/users", service: "user" }],
 *   endpoints: [(job) => job.path === "/_ep/health" ? { body: "ok" } : undefined],
 * });
 * const http = (path: string): Job => ({
 *   service: path.split("/")[1], protocol: "http", method: "GET", path, query: "",
 *   headers: [], body: new Uint8Array(0), deadlineMs: 0, priority: 0, remote: "",
 * });
 * console.assert(router.service(http("/api/users/7")) === "user");
 * console.assert(router.service(http("/api/x")) === "api");
 * console.assert(router.service(http("/echo/x")) === "echo");
 * console.assert(router.isEndpoint(http("/_ep/health")));
 * console.assert(router.endpoint(http("/_ep/health")).body === "ok");
 * ```
 */
export class Router {
  /** Longest prefix first; `under` is the prefix of the paths below it (ends with `/`). */
  #prefixes: { prefix: string; under: string; service: string }[];
  #route?: RouteFunction;
  #endpoints: readonly EndpointHandler[];

  /** Creates a router. */
  constructor(options: RouterOptions = {}) {
    this.#prefixes = [...(options.prefixes ?? [])]
      .sort((a, b) => b.prefix.length - a.prefix.length)
      .map(({ prefix, service }) => ({
        prefix,
        under: prefix.endsWith("/") ? prefix : prefix + "/",
        service,
      }));
    this.#route = options.route;
    this.#endpoints = options.endpoints ?? [];
  }

  /** The prefix routes, longest first (the order they are tried in). */
  get prefixes(): PrefixRoute[] {
    return this.#prefixes.map(({ prefix, service }) => ({ prefix, service }));
  }

  /** Whether `job` is for ep itself: an HTTP request for a path under `/_ep/`. */
  isEndpoint(job: Job): boolean {
    return job.protocol === "http" && job.path.startsWith(EP_ENDPOINT_PREFIX);
  }

  /**
   * Answers a job for ep itself ({@linkcode Router.isEndpoint}): the first endpoint handler
   * that answers it. Throws a `no_service` {@linkcode JobError} when none does.
   */
  endpoint(job: Job): JobResult {
    for (const handler of this.#endpoints) {
      const res = handler(job);
      if (res) return res;
    }
    throw new JobError(ErrorCode.NO_SERVICE, `No ep endpoint "${job.path}"`);
  }

  /**
   * The service a job goes to (not for jobs for ep itself): for HTTP the longest prefix
   * route that matches, else the route function's answer, else the service the job names.
   * A promise only when the route function answers with one.
   */
  service(job: Job): string | Promise<string> {
    if (job.protocol !== "http") return job.service;
    const path = job.path;
    for (const r of this.#prefixes) {
      if (path === r.prefix || path.startsWith(r.under)) return r.service;
    }
    if (!this.#route) return job.service;
    const routed = this.#route(job);
    if (routed instanceof Promise) return routed.then((s) => s ?? job.service);
    return routed ?? job.service;
  }
}
