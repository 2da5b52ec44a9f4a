/**
 * Child worker processes that follow the load: `ep.spawn { script = "worker.lua", min = 1,
 * max = 4 }` in a control script keeps between `min` and `max` child processes running
 * that script, one more while their services' queue-wait p99 stays above the target, one
 * fewer when they sit idle (the rule of `autoscaler.ts`, with a process as the unit). One
 * command grows a machine's capacity on demand.
 *
 * ## Parent and child
 *
 * - A child runs the same program: `Deno.execPath()` with `run <script>` for a compiled ep
 *   binary (its modules live under a `deno-compile-` root, `Deno.mainModule` shows it), or
 *   `run <permissions> --config <deno.json> <mod.ts> run <script>` under `deno run`: ep's own
 *   `mod.ts`, whatever the parent's main module is, and the parent's permissions (`-A` when it
 *   has them all, else each it holds in full).
 * - Its stdin is a pipe the parent never writes. A child (`EP_PARENT_PID` set) reads it and
 *   stops, draining like on SIGTERM, when it closes: the parent exited or was killed, `kill
 *   -9` included. No child outlives its parent by more than its drain.
 * - Its stdout passes through to the parent's, except a load report once a second, one line
 *   `\x1eep-load {json}` ({@linkcode ChildLoad}): its services, slots, jobs held, and each
 *   service's queue-wait p99 of the second.
 *
 * ## Where the parent learns the wait
 *
 * A parent that listens measures it in its own balancer (arrival to dispatch of each job),
 * for the services its children serve ({@linkcode Children.observe}). Otherwise it takes it
 * from the children's reports: each child measures it in its own balancer, or, as a module
 * worker, estimates it from the queue depth its balancers report (`_wait_estimate.ts`); per
 * service, the parent takes the longest p99 its children reported for the second. How busy
 * the children are (for the idle rule) always comes from their reports.
 *
 * ## Shrinking
 *
 * The newest child gets SIGTERM: a worker drains (every balancer is told at once, the jobs it
 * holds finish) and exits; no job is lost. A child that exits by itself is replaced while
 * fewer than `min` run. {@linkcode Children.close} sends SIGTERM to all, and SIGKILL to those
 * still running after the grace.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { AutoscaleLoop, Autoscaler, type ScaleInput, type ScaleTarget } from "./autoscaler.ts";
import type { WaitWindow } from "./autoscaler.ts";
import type { Node } from "./node.ts";

const log = getLogger(["ep", "children"]);
const enc = new TextEncoder();

/** The environment variable that tells a process it is a child: its parent's pid. */
export const PARENT_ENV = "EP_PARENT_PID";
/** How a load report line starts on a child's stdout. */
export const LOAD_PREFIX = "\u001eep-load ";

/** What a child reports once a second. */
export interface ChildLoad {
  /** The services it serves. */
  services: string[];
  /** Jobs it runs at once. */
  slots: number;
  /** Jobs it held, on average over the second. */
  busy: number;
  /** Each service's queue-wait p99 over the second, ms; null: no job. */
  waits: Record<string, number | null>;
}

/**
 * The V8 flags ep's processes run with (`deno task`, `deno task compile`, the children ep
 * starts): `--no-incremental-marking`. A balancer writes each job's young objects into
 * long-lived ones (queues, maps, connection state); with incremental marking running, the
 * scavenger then kept them alive and promoted them, about 1.2 KB per job, which fed the next
 * marking cycle. Without it a balancer at saturation promoted next to nothing (no major
 * collection in 20 s) and spent 6–25 % less CPU per job (BENCHMARKS.md). Major collections,
 * when they come, are then one pause instead of many steps.
 *
 * @example
 * ```ts
 * import { EP_V8_FLAGS } from "./children.ts";
 * console.assert(EP_V8_FLAGS === "--no-incremental-marking");
 * ```
 */
export const EP_V8_FLAGS = "--no-incremental-marking";

/** A command line. */
export interface Command {
  command: string;
  args: string[];
}

/**
 * The command that runs control script `script` with this same program: a compiled ep
 * binary, or `deno run` of ep's `mod.ts` (see the module doc).
 *
 * @example
 * ```ts ignore
 * const { command, args } = childCommand("/srv/worker.lua");
 * new Deno.Command(command, { args }).spawn();
 * ```
 */
export function childCommand(script: string): Command {
  const compiled = [Deno.mainModule, import.meta.url].some((u) => u.includes("/deno-compile-"));
  if (compiled) return { command: Deno.execPath(), args: ["run", script] };
  const mod = new URL("../../mod.ts", import.meta.url);
  const config = new URL("../../deno.json", import.meta.url);
  let hasConfig = false;
  try {
    hasConfig = Deno.statSync(config).isFile;
  } catch {
    // a published copy: the module's own imports resolve without it
  }
  return {
    command: Deno.execPath(),
    args: [
      "run",
      `--v8-flags=${EP_V8_FLAGS}`,
      ...permissionFlags(),
      ...(hasConfig ? ["--config", config.pathname] : []),
      mod.pathname,
      "run",
      script,
    ],
  };
}

const PERMISSIONS = ["read", "write", "net", "env", "run", "sys", "ffi", "import"] as const;

/** `-A` when every permission is granted, else `--allow-x` for each granted in full. */
function permissionFlags(): string[] {
  const granted = PERMISSIONS.filter((name) => {
    try {
      return Deno.permissions.querySync({ name } as Deno.PermissionDescriptor).state ===
        "granted";
    } catch {
      return false;
    }
  });
  if (granted.length === PERMISSIONS.length) return ["-A"];
  return granted.map((name) => `--allow-${name}`);
}

/** Options of {@linkcode Children}. */
export interface ChildrenOptions {
  /** The control script each child runs (an absolute path). */
  script: string;
  /** Fewest children. */
  min: number;
  /** Most children. */
  max: number;
  /** Queue-wait p99 target of the children's services, ms. */
  targetWaitMs: number;
  /** The parent listens: its balancer feeds {@linkcode Children.observe}. */
  ownWaits?: boolean;
  /** The command that runs a child. Default: {@linkcode childCommand} of the script. */
  command?: Command;
  /** More environment for the children. */
  env?: Record<string, string>;
  /** Autoscaler tuning (tests). */
  upCooldownMs?: number;
  /** Autoscaler tuning (tests). */
  idleMs?: number;
}

interface Child {
  proc: Deno.ChildProcess;
  pid: number;
  state: "starting" | "ready" | "stopping";
  load: ChildLoad | null;
  /** A report arrived since the last tick read it. */
  fresh: boolean;
}

/**
 * Child processes running one control script, scaled on their services' queue waits.
 *
 * @example
 * ```ts ignore
 * const children = new Children({ script: "/srv/worker.lua", min: 1, max: 4, targetWaitMs: 50 });
 * children.start();
 * Deno.addSignalListener("SIGTERM", () => children.close().then(() => Deno.exit(0)));
 * ```
 */
export class Children implements ScaleTarget {
  /** Runs the autoscaler over the children. */
  readonly loop: AutoscaleLoop;
  readonly #opts: ChildrenOptions;
  readonly #command: Command;
  readonly #kids: Child[] = [];
  readonly #services = new Set<string>();
  readonly #exited = new Set<Promise<unknown>>();
  #closing = false;
  #respawnAt = 0;
  #backoff = 0;

  /** Children of `options.script`, none started yet ({@linkcode Children.start}). */
  constructor(options: ChildrenOptions) {
    if (!(options.targetWaitMs > 0)) {
      throw new RangeError(
        `Target wait must be a positive number of ms: "${options.targetWaitMs}"`,
      );
    }
    this.#opts = options;
    this.#command = options.command ?? childCommand(options.script);
    const scaler = new Autoscaler(this, {
      min: options.min,
      max: options.max,
      target: (s) =>
        this.#services.has(s) ? { waitMs: options.targetWaitMs, max: options.max } : undefined,
      upCooldownMs: options.upCooldownMs,
      idleMs: options.idleMs,
    });
    this.loop = new AutoscaleLoop(scaler, this, {
      accept: (s) => this.#services.has(s),
      input: options.ownWaits ? undefined : () => this.#input(),
    });
  }

  /** Starts `min` children and the autoscaler. */
  start(): void {
    for (let i = 0; i < this.#opts.min; i++) this.#spawn("");
    this.loop.start();
  }

  /** A job's queue wait at the parent's own balancer (when it listens). */
  observe(service: string, waitMs: number): void {
    this.loop.waits.observe(service, waitMs);
  }

  /** The pids of the children running (stopping ones included). */
  get pids(): number[] {
    return this.#kids.map((k) => k.pid);
  }

  /** Children running and starting, not stopping. */
  get size(): number {
    let n = 0;
    for (const k of this.#kids) if (k.state !== "stopping") n++;
    return n;
  }

  /** Children that have not reported yet. */
  get starting(): number {
    let n = 0;
    for (const k of this.#kids) if (k.state === "starting") n++;
    return n;
  }

  /** The slots a child reports (1 before any report). */
  get unitSlots(): number {
    const ready = this.#kids.filter((k) => k.state === "ready" && k.load);
    if (ready.length === 0) return 1;
    return ready.reduce((n, k) => n + k.load!.slots, 0) / ready.length;
  }

  /** Jobs the children held, on average over the last second, as they reported. */
  get busy(): number {
    let n = 0;
    for (const k of this.#kids) if (k.state === "ready" && k.load) n += k.load.busy;
    return n;
  }

  /** Starts one more child. */
  grow(reason: string): void {
    this.#spawn(reason);
  }

  /** Stops the newest child (SIGTERM: it drains). */
  shrink(reason: string): void {
    for (let i = this.#kids.length - 1; i >= 0; i--) {
      const k = this.#kids[i];
      if (k.state === "stopping") continue;
      k.state = "stopping";
      log.info("Stopping child {pid} ({reason}): {size} children", {
        pid: k.pid,
        reason,
        size: this.size,
      });
      signal(k, "SIGTERM");
      return;
    }
  }

  /**
   * Stops every child: SIGTERM (they drain), then SIGKILL to those still running after
   * `graceMs`. Resolves once all have exited.
   */
  async close(graceMs = 30_000): Promise<void> {
    this.#closing = true;
    this.loop.stop();
    for (const k of this.#kids) {
      k.state = "stopping";
      signal(k, "SIGTERM");
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const all = Promise.all([...this.#exited]);
    await Promise.race([all, new Promise((r) => timer = setTimeout(r, graceMs))]);
    clearTimeout(timer);
    for (const k of this.#kids) signal(k, "SIGKILL");
    await all;
  }

  #spawn(reason: string): void {
    if (this.#closing) return;
    let proc: Deno.ChildProcess;
    try {
      proc = new Deno.Command(this.#command.command, {
        args: this.#command.args,
        env: { ...this.#opts.env, [PARENT_ENV]: String(Deno.pid) },
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
    } catch (err) {
      log.error("Cannot start a child for {script}: {error}", {
        script: this.#opts.script,
        error: err,
      });
      return;
    }
    const kid: Child = { proc, pid: proc.pid, state: "starting", load: null, fresh: false };
    this.#kids.push(kid);
    log.info("Started child {pid} ({reason}): {size} children", {
      pid: kid.pid,
      reason: reason || "min",
      size: this.size,
    });
    const reading = this.#read(kid);
    const exited = Promise.all([proc.status, reading]).then(([status]) => this.#gone(kid, status));
    this.#exited.add(exited);
    exited.finally(() => this.#exited.delete(exited));
  }

  async #read(kid: Child): Promise<void> {
    let buf = "";
    try {
      for await (const text of kid.proc.stdout.pipeThrough(new TextDecoderStream())) {
        buf += text;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          this.#line(kid, buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      }
    } catch {
      // the pipe broke: the child is gone
    }
    if (buf.length > 0) this.#line(kid, buf);
  }

  #line(kid: Child, line: string): void {
    if (!line.startsWith(LOAD_PREFIX)) {
      writeAll(enc.encode(line + "\n"));
      return;
    }
    let load: ChildLoad;
    try {
      load = JSON.parse(line.slice(LOAD_PREFIX.length));
      if (!Array.isArray(load.services) || typeof load.waits !== "object") throw new TypeError();
    } catch {
      log.debug("Child {pid} wrote a load report that cannot be read", { pid: kid.pid });
      return;
    }
    kid.load = load;
    kid.fresh = true;
    for (const s of load.services) this.#services.add(String(s));
    if (kid.state === "starting") kid.state = "ready";
  }

  #gone(kid: Child, status: Deno.CommandStatus): void {
    const i = this.#kids.indexOf(kid);
    if (i >= 0) this.#kids.splice(i, 1);
    if (kid.state === "stopping" || this.#closing) {
      log.info("Child {pid} exited: {size} children", { pid: kid.pid, size: this.size });
      return;
    }
    log.warn("Child {pid} exited by itself with code {code}", {
      pid: kid.pid,
      code: status.signal ?? status.code,
    });
    if (this.size >= this.#opts.min) return;
    // Replace it; one that keeps dying at once is replaced ever more slowly (up to 30 s).
    const now = performance.now();
    this.#backoff = now < this.#respawnAt + 5_000 ? Math.min(30_000, this.#backoff * 2 || 500) : 0;
    this.#respawnAt = now + this.#backoff;
    const t = setTimeout(() => {
      if (this.size < this.#opts.min) this.#spawn("replacing a child that exited");
    }, this.#backoff);
    Deno.unrefTimer(t);
  }

  /** A tick's measurements from the children's reports (when the parent does not listen). */
  #input(): ScaleInput {
    const waits = new Map<string, number>();
    for (const k of this.#kids) {
      if (k.state !== "ready" || !k.fresh || !k.load) continue;
      k.fresh = false;
      for (const [s, w] of Object.entries(k.load.waits)) {
        const v = w === null ? NaN : Number(w);
        const had = waits.get(s);
        if (had === undefined || Number.isNaN(had) || v > had) waits.set(s, v);
      }
    }
    return { waits, busy: this.busy };
  }
}

function signal(kid: Child, sig: Deno.Signal): void {
  try {
    kid.proc.kill(sig);
  } catch {
    // exited already
  }
}

function writeAll(bytes: Uint8Array): void {
  try {
    let off = 0;
    while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  } catch {
    // our own stdout is gone
  }
}

// ---- the child's side ----

/**
 * In a child: calls `onGone` once the parent's end of stdin closes (the parent exited or was
 * killed).
 *
 * @example
 * ```ts ignore
 * if (Deno.env.get(PARENT_ENV)) watchParent(() => stop());
 * ```
 */
export function watchParent(onGone: () => void): void {
  (async () => {
    try {
      for await (const _ of Deno.stdin.readable) {
        // the parent never writes; anything it does is ignored
      }
    } catch {
      // closed or broken: the parent is gone either way
    }
    log.info("Parent {pid} is gone: stopping", { pid: Deno.env.get(PARENT_ENV) });
    onGone();
  })();
}

/**
 * In a child: writes a {@linkcode ChildLoad} line to stdout once a second, from `node` and
 * the queue waits it fed into `waits` (`NodeOptions.waits`). Returns a function that stops.
 *
 * @example
 * ```ts ignore
 * const waits = new WaitWindow();
 * const node = await startNode({ connect, handlers, waits });
 * const stop = reportLoad(node, waits);
 * ```
 */
export function reportLoad(node: Node, waits: WaitWindow): () => void {
  let sum = 0;
  let samples = 0;
  const sampler = setInterval(() => {
    sum += node.pool?.jobsInFlight ?? 0;
    samples++;
  }, 100);
  const reporter = setInterval(() => {
    const pool = node.pool;
    const load: ChildLoad = {
      services: [...(pool?.services ?? [])],
      slots: node.worker?.slots ?? pool?.concurrency ?? 0,
      busy: samples > 0 ? Math.round(sum / samples * 1000) / 1000 : pool?.jobsInFlight ?? 0,
      waits: Object.fromEntries(
        [...waits.tick()].map(([s, w]) => [s, Number.isNaN(w) ? null : Math.round(w * 10) / 10]),
      ),
    };
    sum = 0;
    samples = 0;
    writeAll(enc.encode(LOAD_PREFIX + JSON.stringify(load) + "\n"));
  }, 1_000);
  Deno.unrefTimer(sampler);
  Deno.unrefTimer(reporter);
  return () => {
    clearInterval(sampler);
    clearInterval(reporter);
  };
}
