/**
 * Who may read ep's status data: one rule for every way in (the `/_ep/` page,
 * `/_ep/stats` and `/_ep/metrics` over HTTP, `STATS_REQUEST` over EP).
 *
 * - default: loopback peers only (`127.0.0.0/8`, `::1`, `::ffff:127.x`);
 * - `token`: the token is required from every peer, loopback included;
 * - `public: true` (and no token): everyone.
 *
 * @module
 */
import { timingSafeEqualString } from "./_timing_safe.ts";

/**
 * Who may read `/_ep/` (the page), `/_ep/stats`, `/_ep/metrics` and EP `STATS_REQUEST`.
 * `/_ep/health` is open to everyone. Default: loopback peers only.
 *
 * @example
 * ```ts
 * import type { AccessOptions } from "./access.ts";
 * const scrapedFromAnywhere: AccessOptions = { token: "s3cret" };
 * console.assert(scrapedFromAnywhere.token === "s3cret");
 * ```
 */
export interface AccessOptions {
  /**
   * Required from every peer (loopback included) when set: over HTTP as
   * `Authorization: Bearer <token>` or `?token=<token>`, over EP as HELLO's `token`.
   * Compared in constant time.
   */
  token?: string;
  /** Without a token, serve every peer (not only loopback). Default false. */
  public?: boolean;
}

/**
 * What the access rule decided: admitted because of the `token`, because the peer is on
 * `loopback`, or because access is `public`; refused as `unauthorized` (a token is
 * required and was missing or wrong: HTTP 401) or `forbidden` (not loopback: HTTP 403).
 */
export type AccessVerdict = "token" | "loopback" | "public" | "unauthorized" | "forbidden";

/**
 * Applies the status access rule to a peer at `remote` that presented `token` (`null` or
 * `""`: none).
 *
 * @example
 * ```ts
 * import { statusAccess } from "./access.ts";
 * console.assert(statusAccess({}, "127.0.0.1:4000", null) === "loopback");
 * console.assert(statusAccess({}, "10.0.0.7:4000", null) === "forbidden");
 * console.assert(statusAccess({ token: "t" }, "127.0.0.1:4000", "x") === "unauthorized");
 * console.assert(statusAccess({ token: "t" }, "10.0.0.7:4000", "t") === "token");
 * ```
 */
export function statusAccess(
  access: AccessOptions,
  remote: string,
  token: string | null,
): AccessVerdict {
  if (access.token !== undefined && access.token !== "") {
    return token && timingSafeEqualString(token, access.token) ? "token" : "unauthorized";
  }
  if (access.public === true) return "public";
  return isLoopback(remote) ? "loopback" : "forbidden";
}

/**
 * Whether a verdict of {@linkcode statusAccess} admits the peer.
 *
 * @example
 * ```ts
 * import { admitted } from "./access.ts";
 * console.assert(admitted("loopback") && !admitted("forbidden"));
 * ```
 */
export function admitted(verdict: AccessVerdict): boolean {
  return verdict === "token" || verdict === "loopback" || verdict === "public";
}

/**
 * Whether a `host:port` peer address is a loopback address (`127.0.0.0/8`, `::1`,
 * `::ffff:127.x`), or an in-memory test transport.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./access.ts";
 * console.assert(isLoopback("127.0.0.1:5000") && isLoopback("[::1]:5000"));
 * console.assert(!isLoopback("10.0.0.1:5000"));
 * ```
 */
export function isLoopback(remote: string): boolean {
  return remote.startsWith("127.") || remote.startsWith("[::1]:") ||
    remote.startsWith("[::ffff:127.") || remote.startsWith("memory:");
}
