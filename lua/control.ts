/**
 * Control scripts: a Lua file decides what a process is. It runs once, on the main
 * thread, in an engine with the whole `ep` module (ep.lua and control.lua); `ep.listen`,
 * `ep.connect`, `ep.service`, `ep.upstream`, … record what to start, and
 * {@linkcode runScript} starts it (a balancer, a module worker, or both) with the services
 * on Lua handler threads. The script's timers stay on this thread and start once the
 * process runs: their `ep.call` goes through the node, and `ep.exit` stops the process.
 *
 * @example
 * ```ts ignore
 * import { runScript } from "./control.ts";
 * Deno.exit(await runScript("scripts/main.lua"));
 * ```
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { announce } from "../core/logging.ts";
import { type Node, startNode, type ThreadScale } from "../core/node/node.ts";
import { WaitWindow } from "../core/node/autoscaler.ts";
import { Children, PARENT_ENV, reportLoad, watchParent } from "../core/node/children.ts";
import { untilStopped } from "../core/node/signals.ts";
import { handlerCounters } from "../core/threads/job_errors.ts";
import type { MonitorOptions } from "../core/observe/monitor.ts";
import { type Job, JobError } from "../core/job.ts";
import { CallUnavailableError } from "../core/errors.ts";
import type { PoolCall, PoolCallReply } from "../core/threads/pool_types.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { isServiceName } from "../protocol/ep_frames.ts";
import { LuaHandlerRuntime, type LuaHandlerRuntimeOptions } from "./handler_runtime.ts";
import type { LuaValue } from "./engine.ts";
import { LuaError } from "./errors.ts";
import { getConfig } from "@logtape/logtape";
import { LUA_RUNTIME, luaLongString, type LuaThreadOptions } from "./thread.ts";
import { runsInline, startInlineLua } from "./inline.ts";

const log = getLogger(["ep", "control"]);

/** What a control script asked for. */
export interface ControlConfig {
  /** `ep.listen`: become a balancer here. */
  listen?: { port: number; hostname: string };
  /** `ep.connect`: pull jobs from these balancers. */
  connect: string[];
  /** `ep.threads`. */
  threads?: number;
  /** `ep.service` calls, in order. */
  services: {
    name: string;
    file: string;
    inline: boolean;
    slots: number;
    timeoutMs: number;
    /** `description` option: what it does, for `/_ep/services`. */
    description?: string;
    /** `version` option. */
    version?: string;
    /** `hedge = true` (or `hedge_ms` given): the handler is idempotent, jobs may be hedged. */
    hedge: boolean;
    /** `hedge_ms`: hedge after that long; 0: after the service's recent p95. */
    hedgeMs: number;
    /** `threads = { min =, max = }`: the handler threads scale on this service's waits. */
    threads?: { min: number; max: number };
    /**
     * `slots = { min =, max = }`: the slots the process offers scale on this service's waits
     * (then `slots` is 0).
     */
    slotRange?: { min: number; max: number };
    /** `target_wait_ms` (with `threads` or `slots = { min =, max = }`; default 50). */
    targetWaitMs?: number;
  }[];
  /** `ep.spawn` calls: child worker processes of a script, scaled between `min` and `max`. */
  spawn: { script: string; min: number; max: number; targetWaitMs: number }[];
  /** `ep.route(prefix, service)` calls. */
  routes: { prefix: string; service: string }[];
  /** Whether `ep.route(fn)` was called. */
  routeFn: boolean;
  /** `ep.token`. */
  token?: string;
  /** `ep.config` values. */
  config: Record<string, number>;
  /** `ep.upstream` calls: other clusters' balancers by name, with the token to present. */
  upstreams: Record<string, { servers: string[]; token?: string }>;
  /** `ep.exit` code, when the script asked to stop. */
  exitCode?: number;
}

/** The control script, loaded and run. */
export interface Control {
  /** What it asked for. */
  readonly config: ControlConfig;
  /** Its engine (kept for timers and the route function). */
  readonly runtime: LuaHandlerRuntime;
  /** Calls the script's `ep.route(fn)` for a job; undefined means the default route. */
  route(job: Job): Promise<string | undefined>;
  /**
   * Starts the script's timers, held until the process it describes runs: each counts from
   * when the script set it (one whose time passed runs at once).
   */
  startTimers(): void;
}

const CONTROL_LUA = new URL("./control.lua", import.meta.url);
/** `target_wait_ms` when a service scales its threads without one. */
const DEFAULT_TARGET_WAIT_MS = 50;

/** Options of {@linkcode loadControl}. */
export interface LoadControlOptions {
  /** `ep.exit(code)` after the script ran (from a timer): the process should stop. */
  onExit?: (code: number) => void;
  /**
   * Carries out `ep.call` from the script's timers (and route function): the node's
   * `call` once it runs. Rejects with a `JobError`, whose kind Lua gets. Without it, or
   * while it rejects with `CallUnavailableError`, `ep.call` returns `nil, message,
   * "unavailable"`.
   */
  call?: (call: PoolCall) => Promise<PoolCallReply>;
}

/**
 * Loads and runs a control script. A script that fails to load rejects with a
 * {@linkcode LuaError} naming the file and line.
 *
 * @example
 * ```ts ignore
 * import { loadControl } from "./control.ts";
 * const control = await loadControl("scripts/main.lua");
 * console.log(control.config.services.map((s) => s.name));
 * ```
 */
export async function loadControl(
  scriptPath: string,
  options: LoadControlOptions = {},
): Promise<Control> {
  const path = await Deno.realPath(scriptPath);
  const dir = path.slice(0, path.lastIndexOf("/") + 1);
  const name = path.slice(dir.length);
  const script = await Deno.readTextFile(path);
  const controlLua = await Deno.readTextFile(CONTROL_LUA);
  const config: ControlConfig = {
    connect: [],
    services: [],
    spawn: [],
    routes: [],
    routeFn: false,
    config: {},
    upstreams: {},
  };
  let loaded = false;
  const str = (v: LuaValue) => (v === null ? "" : String(v));
  const hostFunctions: Record<string, (...args: LuaValue[]) => LuaValue | void> = {
    listen: (port, host) => {
      config.listen = { port: Number(port), hostname: str(host) || "127.0.0.1" };
    },
    connect: (addr) => void config.connect.push(str(addr)),
    // 0: the number of cores (the default).
    threads: (n) => void (config.threads = Number(n) || undefined),
    // control.lua checked the options (threads bounds, a positive target; hedge, hedge_ms).
    service: (
      svc,
      file,
      inline,
      slots,
      timeout,
      hedge,
      hedgeMs,
      tmin,
      tmax,
      target,
      description,
      version,
      smin,
      smax,
    ) => {
      const min = Number(tmin) || 0;
      const slotMin = Number(smin) || 0;
      config.services.push({
        name: str(svc),
        file: str(file),
        inline: inline === true,
        slots: Number(slots) || 0,
        timeoutMs: Number(timeout) || 0,
        ...(typeof description === "string" ? { description } : {}),
        ...(typeof version === "string" ? { version } : {}),
        hedge: hedge === true,
        hedgeMs: Number(hedgeMs) || 0,
        ...(min > 0
          ? {
            threads: { min, max: Number(tmax) },
            targetWaitMs: Number(target) || DEFAULT_TARGET_WAIT_MS,
          }
          : {}),
        ...(slotMin > 0
          ? {
            slotRange: { min: slotMin, max: Number(smax) },
            targetWaitMs: Number(target) || DEFAULT_TARGET_WAIT_MS,
          }
          : {}),
      });
    },
    spawn: (script, min, max, target) =>
      void config.spawn.push({
        script: str(script),
        min: Number(min),
        max: Number(max),
        targetWaitMs: Number(target),
      }),
    route: (prefix, svc) => void config.routes.push({ prefix: str(prefix), service: str(svc) }),
    route_fn: () => void (config.routeFn = true),
    token: (t) => void (config.token = str(t)),
    config: (k, v) => void (config.config[str(k)] = Number(v)),
    // control.lua checked the rest (a fresh name, "host:port" addresses joined with ",").
    upstream: (name, addrs, token) => {
      config.upstreams[str(name)] = {
        servers: str(addrs).split(","),
        ...(typeof token === "string" ? { token } : {}),
      };
    },
    is_service_name: (name) => isServiceName(str(name)),
    exit: (code) => exit(Number(code) || 0),
  };
  // ep.exit: in the script body the script stops there and nothing starts; later (a timer
  // callback, which the runtime ends quietly) the process stops.
  const exit = (code: number) => {
    config.exitCode = code;
    if (loaded) options.onExit?.(code);
  };
  const controlSource = `local install = assert(load(${luaLongString(controlLua)}, "=control.lua"))
install("control", ep._ext)
-- A syntax error is the script's own message ("main.lua:3: ..."): raised at level 0, so
-- that no second location (this wrapper's) is put in front of it.
local main, syntax = load(${luaLongString(script)}, ${JSON.stringify("@" + name)})
if not main then error(syntax, 0) end
main()
return function() return "" end`;
  const routeSource = `return function(req)
  if __EP_ROUTE == nil then return "" end
  local s = __EP_ROUTE(req)
  if s == nil then return "" end
  return tostring(s)
end`;
  let runtime: LuaHandlerRuntime;
  try {
    runtime = await LuaHandlerRuntime.create({
      services: [
        { name: "__control", source: controlSource, chunkName: name },
        { name: "__route", source: routeSource, chunkName: "route" },
      ],
      scriptDir: dir,
      hostFunctions,
      call: controlCall(options.call),
      exit,
      holdTimers: true,
    });
  } catch (err) {
    if (config.exitCode !== undefined && String((err as Error).message).includes("__ep_exit__")) {
      // ep.exit() in the script body: stop with its code, start nothing.
      return {
        config,
        runtime: await LuaHandlerRuntime.create({ services: [] }),
        route: () => Promise.resolve(undefined),
        startTimers: () => {},
      };
    }
    throw err;
  }
  loaded = true;
  let routeId = 0;
  const dec = new TextDecoder();
  return {
    config,
    runtime,
    async route(job: Job) {
      const reply = await runtime.handle({
        id: 0x40000000 + (routeId = (routeId + 1) % 0x3fffffff),
        service: "__route",
        method: job.method,
        path: job.path,
        query: job.query,
        headers: job.headers,
        body: job.body,
        requestId: job.requestId,
      });
      const svc = dec.decode(reply.body);
      return svc === "" ? undefined : svc;
    },
    startTimers: () => runtime.releaseTimers(),
  };
}

/** `ep.call` on the main thread: through `call` (the node), errors as `{ kind, message }`. */
function controlCall(
  call: LoadControlOptions["call"],
): NonNullable<LuaHandlerRuntimeOptions["call"]> {
  return (request, done) => {
    const pending = call
      // thread -1: no handler thread's, the main thread's own script.
      ? Promise.resolve().then(() => call({ thread: -1, ...request, meta: [] }))
      : Promise.reject(notStarted(request.service));
    // Always answered later, never from inside this call (the runtime is not waiting yet).
    pending.then(
      (r) => done(null, { status: r.status, body: r.body }),
      (err) => {
        if (err instanceof JobError) return done({ kind: err.kind, message: err.message });
        log.error("A control script's call failed: {error}", { error: err });
        const e = new JobError(ErrorCode.INTERNAL, "Internal error");
        done({ kind: e.kind, message: e.message });
      },
    );
  };
}

function notStarted(service: string): CallUnavailableError {
  return new CallUnavailableError(
    `This process is still starting: it cannot call "${service.slice(0, 64)}" yet`,
  );
}

/**
 * What the command line sets over a control script's own choices (`ep run script.lua
 * --port 7071`): each given value replaces what the script set. `threads: 0` means the
 * number of cores.
 *
 * @example
 * ```ts
 * import type { ControlOverrides } from "./control.ts";
 * const o: ControlOverrides = { port: 7071, threads: 0 };
 * console.assert(o.port === 7071);
 * ```
 */
export interface ControlOverrides {
  /** Replaces the port of `ep.listen`. */
  port?: number;
  /** Replaces the host of `ep.listen`. */
  host?: string;
  /** Replaces `ep.threads` (0: the number of cores). */
  threads?: number;
  /** Replaces the balancers of `ep.connect`. */
  connect?: string[];
  /** Replaces `ep.token`. */
  token?: string;
}

/**
 * Applies `overrides` to what a script asked for; returns a note for each one that does not
 * apply (`--port` to a script that does not listen).
 *
 * @example
 * ```ts
 * import { applyOverrides, type ControlConfig } from "./control.ts";
 * const config: ControlConfig = {
 *   listen: { port: 7070, hostname: "127.0.0.1" }, connect: [], services: [], routes: [],
 *   routeFn: false, config: {}, upstreams: {}, spawn: [],
 * };
 * console.assert(applyOverrides(config, { port: 7071, connect: ["h:1"] }).length === 1);
 * console.assert(config.listen?.port === 7071);
 * ```
 */
export function applyOverrides(config: ControlConfig, overrides: ControlOverrides): string[] {
  const ignored: string[] = [];
  if (overrides.port !== undefined || overrides.host !== undefined) {
    if (config.listen) {
      if (overrides.port !== undefined) config.listen.port = overrides.port;
      if (overrides.host !== undefined) config.listen.hostname = overrides.host;
    } else ignored.push("--port and --host do not apply: the script does not call ep.listen");
  }
  if (overrides.threads !== undefined) config.threads = overrides.threads || undefined;
  if (overrides.connect !== undefined) {
    if (config.connect.length > 0) config.connect = [...overrides.connect];
    else ignored.push("--connect does not apply: the script does not call ep.connect");
  }
  if (overrides.token !== undefined) config.token = overrides.token;
  return ignored;
}

/**
 * Runs a control script until the process is told to stop (SIGINT, SIGTERM, `ep.exit`),
 * then drains it (a second SIGINT or SIGTERM stops it at once): starts what it asked for,
 * reloads service code on SIGHUP. Returns the exit code. What it
 * prints for the operator (the banner, why it cannot start) goes through `announce`: plain
 * lines, or JSON records when the log is JSON lines.
 *
 * @example
 * ```ts ignore
 * import { runScript } from "./control.ts";
 * Deno.exit(await runScript("scripts/worker.lua"));
 * ```
 */
export async function runScript(
  scriptPath: string,
  options: { observe?: MonitorOptions; overrides?: ControlOverrides; exposeErrors?: boolean } = {},
): Promise<number> {
  let exit: ((code: number) => void) | null = null;
  const exited = new Promise<number>((resolve) => exit = resolve);
  let control: Control;
  // The script's timers call through the node once it runs (Node.call).
  let node: Node | null = null;
  try {
    control = await loadControl(scriptPath, {
      onExit: (code) => exit!(code),
      call: (call) => node ? node.call(call) : Promise.reject(notStarted(call.service)),
    });
  } catch (err) {
    const message = err instanceof LuaError ? err.message : (err as Error).message;
    announce(`ep: cannot run ${scriptPath}: ${message}`, { error: true });
    return 1;
  }
  const c = control.config;
  for (const note of applyOverrides(c, options.overrides ?? {})) log.warn(note);
  if (c.exitCode !== undefined) {
    await control.runtime.close();
    return c.exitCode;
  }
  const scriptReal = await Deno.realPath(scriptPath);
  const dir = scriptReal.slice(0, scriptReal.lastIndexOf("/") + 1);
  // A child of another ep process (ep.spawn) stops when its parent is gone.
  const isChild = Deno.env.get(PARENT_ENV) !== undefined;
  if (isChild) watchParent(() => exit!(0));
  let children: Children[];
  try {
    children = spawnChildren(c, dir);
  } catch (err) {
    announce(`ep: cannot run ${scriptPath}: ${(err as Error).message}`, { error: true });
    await control.runtime.close();
    return 1;
  }
  if (!c.listen && c.connect.length === 0) {
    if (c.services.length > 0) {
      announce(`ep: ${scriptPath} declares services but neither ep.listen nor ep.connect`, {
        error: true,
      });
      await control.runtime.close();
      return 1;
    }
    // A plain script: it ran; timers it started keep it alive until ep.exit (and the
    // children it spawned, until a signal). Their ep.call can reach upstreams (there is no
    // balancer of its own to call through).
    node = await startNode({ upstreams: c.upstreams });
    for (const k of children) k.start();
    const unlisten = children.length > 0 ? onStopSignals(() => exit!(0)) : () => {};
    control.startTimers();
    const code = await exited;
    unlisten();
    await Promise.all(children.map((k) => k.close()));
    await node.close();
    await control.runtime.close();
    return code;
  }
  // Services with `threads = { min =, max = }` scale the handler threads together: within
  // the widest bounds, each service growing them up to its own max (autoscaler.ts).
  const scaled = c.services.filter((s) => s.threads);
  const scale: ThreadScale | undefined = scaled.length > 0
    ? {
      min: Math.max(...scaled.map((s) => s.threads!.min)),
      max: Math.max(...scaled.map((s) => s.threads!.max)),
      targetWaitMs: new Map(
        scaled.map((s) => [s.name, { waitMs: s.targetWaitMs!, max: s.threads!.max }]),
      ),
    }
    : undefined;
  const threads = scale
    ? Math.min(scale.max, Math.max(scale.min, c.threads ?? scale.min))
    : c.threads ?? navigator.hardwareConcurrency;
  // Each service adds its slots (default: one per thread; with `slots = { min =, max = }`,
  // its max) to the jobs this process runs at once; the pool spreads them over the threads.
  const slotsOf = (s: typeof c.services[number], bound: "min" | "max") =>
    s.slotRange?.[bound] ?? (s.slots || threads);
  const totalSlots = c.services.reduce((n, s) => n + slotsOf(s, "max"), 0);
  const concurrency = c.config.concurrency ?? Math.max(1, Math.ceil(totalSlots / threads));
  // Services with `slots = { min =, max = }` scale the slots offered instead (control.lua
  // refuses both in one script): from every service's min to every service's max, each
  // scaled service's waits driving them up to that max.
  const slotScaled = c.services.filter((s) => s.slotRange);
  const slotScale: ThreadScale | undefined = slotScaled.length > 0
    ? {
      unit: "slots",
      min: c.services.reduce((n, s) => n + slotsOf(s, "min"), 0),
      max: totalSlots,
      targetWaitMs: new Map(
        slotScaled.map((s) => [s.name, { waitMs: s.targetWaitMs!, max: totalSlots }]),
      ),
    }
    : undefined;
  const token = c.token ?? Deno.env.get("EP_TOKEN");
  const moduleOptions = (): LuaThreadOptions => ({
    services: c.services.map((s) => ({
      name: s.name,
      file: s.inline ? undefined : new URL(s.file, `file://${dir}`).pathname,
    })),
    script: scriptReal,
    scriptDir: dir,
    logLevel: logLevel(),
  });
  const timeouts = new Map(
    c.services.filter((s) => s.timeoutMs > 0).map((s) => [s.name, s.timeoutMs]),
  );
  // Idempotent services: told to the balancers this worker pulls from (REGISTER), and to
  // this process's own balancer when it listens.
  const hedge = new Map(
    c.services.filter((s) => s.hedge).map((s) => [s.name, s.hedgeMs > 0 ? s.hedgeMs : null]),
  );
  // Each job's queue wait: to the children when this process is their balancer, and to the
  // parent in the load reports when this process is a child.
  const reportWaits = isChild ? new WaitWindow() : null;
  const sinks: { observe(service: string, waitMs: number): void }[] = [
    ...(c.listen ? children : []),
    ...(reportWaits ? [reportWaits] : []),
  ];
  // With EP_INLINE=1 a one-slot worker runs its Lua on its main thread (inline.ts).
  const inline = c.services.length > 0 &&
    runsInline({
      threads,
      concurrency,
      scales: (scale ?? slotScale) !== undefined,
      listens: c.listen !== undefined,
    });
  let started: Node;
  try {
    started = await startNode({
      listen: c.listen,
      connect: c.connect.length > 0 ? c.connect : undefined,
      handlers: c.services.length > 0
        ? {
          runtime: LUA_RUNTIME,
          options: moduleOptions,
          threads,
          concurrency,
          timeouts,
          hedge,
          scale: scale ?? slotScale,
          services: c.services.map((s) => s.name),
          start: inline
            ? (o) =>
              startInlineLua(o.moduleOptions as LuaThreadOptions, {
                concurrency: o.perThreadConcurrency,
                queue: o.perThreadQueue,
                onCall: o.onCall,
              })
            : undefined,
        }
        : undefined,
      waits: sinks.length > 0
        ? {
          observe: (service, waitMs) => {
            for (const sink of sinks) sink.observe(service, waitMs);
          },
        }
        : undefined,
      token,
      prefetch: c.config.prefetch,
      name: `ep-worker-${Deno.pid}`,
      observe: options.observe,
      balancer: {
        routes: c.routes,
        route: c.routeFn ? (job) => control.route(job) : undefined,
        maxQueue: c.config.max_queue,
        defaultTimeoutMs: c.config.timeout_ms,
        retries: c.config.retries,
        serviceGraceMs: c.config.grace_ms,
        prefetchBudgetMs: c.config.prefetch_budget_ms,
      },
      upstreams: c.upstreams,
      // ep.config { expose_errors = true } or --expose-errors: handlers' messages to clients.
      exposeErrors: c.config.expose_errors === 1 || options.exposeErrors === true,
      descriptions: Object.fromEntries(
        c.services.filter((s) => s.description !== undefined || s.version !== undefined)
          .map((s) => [s.name, { description: s.description, version: s.version }]),
      ),
    });
  } catch (err) {
    announce(`ep: cannot start ${scriptPath}: ${(err as Error).message}`, { error: true });
    await control.runtime.close();
    return 1;
  }
  node = started;
  for (const k of children) k.start();
  const stopReports = reportWaits ? reportLoad(started, reportWaits) : () => {};
  control.startTimers();
  started.monitor?.setLuaCounters(() => handlerCounters);
  const services = c.services.map((s) => s.name);
  if (started.server) {
    announce(
      `ep listening on ${c.listen!.hostname}:${started.server.addr.port} (HTTP/1.1 and EP)` +
        (services.length ? `, serving ${services.join(", ")}` : ""),
      { properties: { host: c.listen!.hostname, port: started.server.addr.port, services } },
    );
  }
  if (started.worker) {
    // A one-slot worker says where its Lua runs when EP_INLINE=1 put it on its main thread.
    announce(
      `ep worker pulling from ${c.connect.join(", ")}: ${services.join(", ")}` +
        (inline ? " (Lua on the main thread)" : ""),
      { properties: { connect: c.connect, services, inline } },
    );
  }
  // SIGTERM/SIGINT (or ep.exit) drain whatever the process is, a second one stops it at
  // once, SIGHUP reloads service code (core/node/signals.ts). Children (ep.spawn) serve
  // this node's balancer while it drains, so they stop after it.
  let code = 0;
  await untilStopped(started, exited.then((c) => void (code = c)));
  stopReports();
  await Promise.all(children.map((k) => k.close()));
  await control.runtime.close();
  return code;
}

/** The children of the script's `ep.spawn` calls, not started yet; throws for a missing script. */
function spawnChildren(c: ControlConfig, dir: string): Children[] {
  return c.spawn.map((s) => {
    const script = new URL(s.script, `file://${dir}`).pathname;
    try {
      Deno.statSync(script);
    } catch {
      throw new Error(`ep.spawn: no script "${s.script}" (looked for ${script})`);
    }
    return new Children({
      script,
      min: s.min,
      max: s.max,
      targetWaitMs: s.targetWaitMs,
      ownWaits: c.listen !== undefined,
    });
  });
}

/** Calls `stop` on SIGINT or SIGTERM; returns a function that stops listening. */
function onStopSignals(stop: () => void): () => void {
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) Deno.addSignalListener(s, stop);
  return () => {
    for (const s of signals) Deno.removeSignalListener(s, stop);
  };
}

/** The lowest level the main thread logs `["ep"]` at, for the handler threads to match. */
function logLevel(): string {
  const cfg = getConfig();
  const ep = cfg?.loggers.find((l) => Array.isArray(l.category) && l.category[0] === "ep");
  return ep?.lowestLevel ?? "info";
}
