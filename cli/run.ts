/**
 * The `ep` commands that run a node until a signal: `run <script.lua>` and `start` (a Lua
 * control script decides what the process is), `balancer` and `worker` (a role set by
 * flags, with TypeScript handlers).
 *
 * @module
 */
import { announce } from "../core/logging.ts";
import { type Node, startNode } from "../core/node/node.ts";
import { untilStopped } from "../core/node/signals.ts";
import type { MonitorOptions } from "../core/observe/monitor.ts";
import type { ControlOverrides } from "../lua/control.ts";
import { toFileUrl } from "./_paths.ts";
import { type RoleSettings, SETTINGS } from "./flags.ts";

/** The flags a control script or a role reads (see `ROLE_FLAGS` in `flags.ts`). */
export interface RoleFlags {
  port?: string;
  host?: string;
  connect?: string;
  threads?: string;
  concurrency?: string;
  handlers?: string;
  prefetch?: string;
  "prefetch-budget"?: string;
  token?: string;
  name?: string;
  "log-json"?: boolean;
  "log-level"?: string;
  "access-log"?: boolean;
  "status-token"?: string;
  "status-public"?: boolean;
  "expose-errors"?: boolean;
}

/**
 * Sets the environment variable of each setting given as a flag (`--port 7071` sets
 * `EP_PORT=7071`), so that a control script's `ep.env` reads what the command line says, as
 * the rule "flag > environment > default" wants.
 *
 * @example
 * ```ts ignore
 * import { flagsToEnv } from "./run.ts";
 * flagsToEnv({ port: "7071" });
 * ```
 */
export function flagsToEnv(v: Record<string, unknown>): void {
  for (const s of SETTINGS) {
    const value = s.flag ? v[s.flag] : undefined;
    if (!s.env || value === undefined) continue;
    Deno.env.set(s.env, value === true ? "1" : String(value));
  }
}

/**
 * What the flags given on the command line replace in a control script (see
 * `ControlOverrides`).
 *
 * @example
 * ```ts
 * import { overridesOf } from "./run.ts";
 * const o = overridesOf({ given: { port: 7071 }, threads: 2 } as never);
 * console.assert(o.port === 7071 && o.threads === undefined);
 * ```
 */
export function overridesOf(settings: RoleSettings): ControlOverrides {
  const g = settings.given;
  return {
    port: g.port,
    host: g.host,
    threads: g.threads ? settings.threads ?? 0 : undefined,
    connect: g.connect,
    token: g.token,
  };
}

/**
 * `ep run <script.lua>`: runs a Lua control script and returns its exit code (2 without a
 * script).
 *
 * @example
 * ```ts ignore
 * import { runControlScript } from "./run.ts";
 * Deno.exit(await runControlScript("scripts/balancer.lua", settings, {}));
 * ```
 */
export async function runControlScript(
  script: string | undefined,
  settings: RoleSettings,
  v: RoleFlags,
): Promise<number> {
  if (!script) {
    console.error("ep run: Missing script (ep run <script.lua>; see ep --help)");
    return 2;
  }
  flagsToEnv(v as Record<string, unknown>);
  return await (await import("../lua/control.ts")).runScript(script, {
    observe: observeOptions(v),
    exposeErrors: v["expose-errors"],
    overrides: overridesOf(settings),
  });
}

/** The control script `ep start` runs. */
export const START_SCRIPT: string = new URL("../scripts/main.lua", import.meta.url).pathname;

/**
 * `ep start`: the all-in-one control script (`scripts/main.lua`).
 *
 * @example
 * ```ts ignore
 * import { start } from "./run.ts";
 * Deno.exit(await start(settings, {}));
 * ```
 */
export async function start(settings: RoleSettings, v: RoleFlags): Promise<number> {
  flagsToEnv(v as Record<string, unknown>);
  return await (await import("../lua/control.ts")).runScript(START_SCRIPT, {
    observe: observeOptions(v),
    overrides: overridesOf(settings),
    exposeErrors: v["expose-errors"],
  });
}

/**
 * `ep balancer`, `ep worker`: runs the role until SIGINT/SIGTERM, which drain it (a second
 * one stops it at once); SIGHUP reloads service code. Returns the exit code (1 when the node
 * cannot start).
 *
 * @example
 * ```ts ignore
 * import { runRole } from "./run.ts";
 * Deno.exit(await runRole("balancer", settings, { port: "7070" }));
 * ```
 */
export async function runRole(
  role: "balancer" | "worker",
  settings: RoleSettings,
  v: RoleFlags,
): Promise<number> {
  const { port, host: hostname, connect } = settings;
  const handlers = v.handlers
    ? toFileUrl(v.handlers)
    : new URL("./demo_services.ts", import.meta.url).href;
  let node: Node;
  try {
    node = await startNode({
      listen: role === "worker" ? undefined : { port, hostname },
      connect: role === "worker" ? connect : undefined,
      handlers: role === "balancer" ? undefined : {
        options: { handlers },
        threads: settings.threads,
        concurrency: settings.concurrency ?? 8,
      },
      token: settings.token,
      name: v.name ?? `ep-worker-${Deno.pid}`,
      observe: observeOptions(v),
      prefetch: settings.prefetch,
      balancer: settings.prefetchBudgetMs === undefined
        ? undefined
        : { prefetchBudgetMs: settings.prefetchBudgetMs },
      exposeErrors: v["expose-errors"],
    });
  } catch (err) {
    announce(`ep ${role}: ${(err as Error).message}`, { error: true });
    return 1;
  }
  if (node.server) {
    announce(`ep ${role} listening on ${hostname}:${node.server.addr.port} (HTTP/1.1 and EP)`, {
      properties: { host: hostname, port: node.server.addr.port },
    });
  } else {
    announce(`ep worker pulling from ${connect.join(", ")}`, { properties: { connect } });
  }
  await untilStopped(node);
  return 0;
}

/**
 * Status page and access log options from the flags (and `EP_STATUS_TOKEN`).
 *
 * @example
 * ```ts
 * import { observeOptions } from "./run.ts";
 * console.assert(observeOptions({ "status-public": true }).access?.public === true);
 * ```
 */
export function observeOptions(
  v: { "access-log"?: boolean; "status-token"?: string; "status-public"?: boolean },
): MonitorOptions {
  return {
    version: "0.1.0",
    accessLog: v["access-log"] ?? false,
    access: {
      token: v["status-token"] ?? Deno.env.get("EP_STATUS_TOKEN"),
      public: v["status-public"] ?? false,
    },
  };
}
