/**
 * Processes for the benchmarks that start several (`compare.ts`, `cpu_bench.ts`): child
 * processes that are registered and killed at the end, their CPU from /proc, ports, wrk with
 * its own CPU, and apt installs of what is missing.
 *
 * CPU, two ways:
 * - {@linkcode CpuMeter}: from `/proc/<pid>/stat` (utime + stime of all threads, plus the
 *   reaped children's cutime + cstime, plus every live descendant, so nginx or HAProxy
 *   children count as their process), in clock ticks of 10 ms: for runs of seconds at high
 *   CPU;
 * - {@linkcode threadCpuNs}: the sum over `/proc/<pid>/task/<tid>/schedstat` (time on a CPU,
 *   ns) of the live threads: precise enough for low rates and short runs, but the time of a
 *   thread that ended is lost (ep's threads live as long as their process).
 */
import { connect as epConnect } from "../../core/net/client.ts";
import { connect as tcpConnect, listen } from "../../core/net/transport.ts";
import { have } from "./_bench_util.ts";
import { EP_V8_FLAGS } from "../../core/node/children.ts";

/** Every child started here that still runs. */
export const children: Set<Child> = new Set();

/** A child process with a name, its last 16 KiB of output, and a bounded wait for a line. */
export class Child {
  readonly name: string;
  readonly proc: Deno.ChildProcess;
  output = "";
  readonly exited: Promise<Deno.CommandStatus>;
  #watchers: (() => void)[] = [];

  constructor(name: string, cmd: string, args: string[], env: Record<string, string> = {}) {
    this.name = name;
    this.proc = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // Every Deno process of a benchmark (ep's, the anchors' HTTP workers, deno-floor) runs
      // with the V8 flags ep's own tasks use.
      env: {
        NO_COLOR: "1",
        ...(cmd === Deno.execPath() ? { DENO_V8_FLAGS: EP_V8_FLAGS } : {}),
        ...env,
      },
    }).spawn();
    children.add(this);
    const pump = async (s: ReadableStream<Uint8Array>) => {
      try {
        for await (const text of s.pipeThrough(new TextDecoderStream())) {
          this.output = (this.output + text).slice(-16_384);
          for (const w of this.#watchers) w();
        }
      } catch {
        // the process is gone
      }
    };
    const pumped = Promise.all([pump(this.proc.stdout), pump(this.proc.stderr)]);
    // Exited once its output is read too (its last lines, such as `ep bench --json`'s
    // result, can arrive after its status); at most 2 s more, for a pipe a child keeps open.
    this.exited = this.proc.status.then(async (status) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([pumped, new Promise((r) => timer = setTimeout(r, 2_000))]);
      clearTimeout(timer);
      return status;
    });
    this.exited.then(() => children.delete(this));
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Waits (bounded) until the output matches `re`. */
  waitFor(re: RegExp, ms = 20_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#watchers = this.#watchers.filter((w) => w !== check);
        reject(new Error(`${this.name}: no ${re} within ${ms} ms; output:\n${this.output}`));
      }, ms);
      const check = () => {
        const m = this.output.match(re);
        if (m) {
          clearTimeout(timer);
          this.#watchers = this.#watchers.filter((w) => w !== check);
          resolve(m);
        }
      };
      this.#watchers.push(check);
      check();
    });
  }

  kill(): void {
    try {
      this.proc.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Kills every child started here and waits for them. */
/** The load averages of the last 1, 5 and 15 minutes, as `/proc/loadavg` says ("?" if not). */
export function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

/**
 * The result of an `ep bench … --json` child once it exited, or an error with its output
 * when it failed or printed no JSON.
 */
export async function benchResult<T>(child: Child): Promise<T> {
  const status = await child.exited;
  const start = child.output.indexOf("{");
  if (!status.success || start < 0) {
    throw new Error(`${child.name} failed:\n${child.output}`);
  }
  return JSON.parse(child.output.slice(start));
}

export async function killAll(): Promise<void> {
  const all = [...children];
  for (const c of all) c.kill();
  await Promise.all(all.map((c) => c.exited.catch(() => {})));
}

/** On SIGINT/SIGTERM, kills every child and exits 130; returns the function that undoes it. */
export function killOnSignal(): () => void {
  const onSignal = () => {
    console.error("\ninterrupted: stopping every process started here");
    killAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  return () => {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  };
}

// ---------------------------------------------------------------------------------------
// CPU

const HZ = 100; // USER_HZ: the clock ticks of /proc/<pid>/stat

export interface ProcStat {
  ppid: number;
  /** utime + stime (all threads), seconds. */
  own: number;
  /** utime + stime + cutime + cstime (with the reaped children's), seconds. */
  seconds: number;
}

/** Parses the fields of a `/proc/<pid>/stat` line after the command name. */
export function parseProcStat(line: string): ProcStat {
  const f = line.slice(line.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
  const own = (Number(f[11]) + Number(f[12])) / HZ;
  return { ppid: Number(f[1]), own, seconds: own + (Number(f[13]) + Number(f[14])) / HZ };
}

/** The reaped children's CPU (cutime + cstime, seconds) in a `/proc/<pid>/stat` line. */
export function childrenSecondsOfStat(line: string): number {
  const f = line.slice(line.lastIndexOf(")") + 2).split(" ");
  return (Number(f[13]) + Number(f[14])) / HZ;
}

/** Every process's parent and CPU seconds, from /proc. */
function snapshot(): Map<number, ProcStat> {
  const m = new Map<number, ProcStat>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      m.set(Number(e.name), parseProcStat(Deno.readTextFileSync(`/proc/${e.name}/stat`)));
    } catch {
      // gone meanwhile
    }
  }
  return m;
}

/** CPU seconds of `pid` and all its live descendants (with their reaped children's). */
function treeSeconds(snap: Map<number, ProcStat>, pid: number): number {
  const kids = new Map<number, number[]>();
  for (const [p, s] of snap) {
    const list = kids.get(s.ppid);
    if (list) list.push(p);
    else kids.set(s.ppid, [p]);
  }
  let sum = 0;
  const stack = [pid];
  const seen = new Set<number>();
  while (stack.length > 0) {
    const p = stack.pop()!;
    if (seen.has(p)) continue;
    seen.add(p);
    const s = snap.get(p);
    if (!s) continue;
    sum += s.seconds;
    stack.push(...(kids.get(p) ?? []));
  }
  return sum;
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
export function machineBusySeconds(): number {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - f[3] - f[4]) / HZ; // minus idle and iowait
  } catch {
    return NaN;
  }
}

/**
 * CPU used over an interval by the children started here (each with its descendants), by
 * this process, and by everything else on the machine.
 */
export class CpuMeter {
  #t0 = performance.now();
  #t1 = NaN;
  #start: Map<number, ProcStat>;
  #end: Map<number, ProcStat> | null = null;
  #pids: number[];
  #machine0 = machineBusySeconds();
  #machine1 = NaN;

  constructor() {
    this.#pids = [...children].map((c) => c.pid);
    this.#start = snapshot();
  }

  /** Ends the interval (later readings use its end); called by the first reading if not. */
  stop(): this {
    if (!this.#end) {
      this.#end = snapshot();
      this.#t1 = performance.now();
      this.#machine1 = machineBusySeconds();
    }
    return this;
  }

  /** Wall seconds of the interval. */
  get wall(): number {
    this.stop();
    return (this.#t1 - this.#t0) / 1000;
  }

  /** CPU seconds of this process's own threads (the load generator's) over the interval. */
  selfSeconds(): number {
    this.stop();
    return (this.#end!.get(Deno.pid)?.own ?? NaN) - (this.#start.get(Deno.pid)?.own ?? NaN);
  }

  /** CPU seconds of `pid` and its descendants over the interval. */
  seconds(pid: number): number {
    this.stop();
    return treeSeconds(this.#end!, pid) - treeSeconds(this.#start, pid);
  }

  /** % of one core used by `pid` and its descendants. */
  percent(pid: number): number {
    return round1((this.seconds(pid) / this.wall) * 100);
  }

  /** % of one core used by the whole machine. */
  machinePercent(): number {
    this.stop();
    return round1(((this.#machine1 - this.#machine0) / this.wall) * 100);
  }

  /**
   * CPU used by processes not started here (other people's work), % of one core.
   * `oursSeconds`: CPU of our own processes the meter does not see (a finished wrk).
   */
  foreign(oursSeconds = 0): number {
    this.stop();
    // This process: its own threads only (its children are counted below, one by one).
    let ours = oursSeconds + this.selfSeconds();
    for (const pid of this.#pids) ours += this.seconds(pid);
    const busy = this.#machine1 - this.#machine0;
    return Math.max(0, round1(((busy - ours) / this.wall) * 100));
  }
}

/**
 * Time on a CPU of a process's live threads, ns, from `/proc/<pid>/task/<tid>/schedstat`;
 * NaN when the process is gone.
 */
export function threadCpuNs(pid: number): number {
  let sum = 0;
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        sum += Number(Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/schedstat`).split(" ")[0]);
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    return NaN;
  }
  return sum;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

// ---------------------------------------------------------------------------------------
// Ports and readiness

/** A port that was free a moment ago. */
export function freePort(): number {
  const l = listen({ port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Waits (bounded) until something accepts connections on `port`. */
export async function waitPort(port: number, owner: Child, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const t = await tcpConnect(`127.0.0.1:${port}`);
      t.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${owner.name} does not accept on port ${port}; output:\n${owner.output}`);
}

/** Waits (bounded) until the balancer at `addr` has `n` workers (providers) registered. */
export async function waitProviders(addr: string, n: number, owner: Child): Promise<void> {
  const end = Date.now() + 20_000;
  while (Date.now() < end) {
    try {
      const c = await epConnect(addr);
      try {
        const stats = await c.stats() as { providers: unknown[] };
        if (stats.providers.length >= n) return;
      } finally {
        c.close();
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`ep workers did not register; balancer output:\n${owner.output}`);
}

// ---------------------------------------------------------------------------------------
// Installs

/** Installs the apt packages whose command is missing (`{ command: package }`). */
export async function ensureInstalled(
  wanted: Record<string, string>,
  options: { noInstall?: boolean } = {},
): Promise<void> {
  const missing: string[] = [];
  for (const [cmd, pkg] of Object.entries(wanted)) if (!(await have(cmd))) missing.push(pkg);
  if (missing.length === 0) return;
  if (options.noInstall) throw new Error(`missing: ${missing.join(", ")}`);
  console.error(`installing ${missing.join(", ")} with apt-get`);
  const sh = (script: string) =>
    new Deno.Command("sh", {
      args: ["-c", script],
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "inherit",
      stderr: "inherit",
    }).output();
  const pkgs = missing.join(" ");
  let out = await sh(`apt-get install -y -q ${pkgs}`);
  if (!out.success) out = await sh(`apt-get update -q && apt-get install -y -q ${pkgs}`);
  if (!out.success) throw new Error(`apt-get install ${pkgs} failed`);
}

// ---------------------------------------------------------------------------------------
// wrk

/** What a wrk run measured. */
export interface WrkResult {
  /** Requests completed (all statuses). */
  requests: number;
  /** Requests with a non-2xx/3xx status. */
  non2xx: number;
  /** Socket errors by kind (connect, read, write, timeout). */
  socketErrors: Record<string, number>;
  /** wrk's Requests/sec. */
  rps: number;
  /** Seconds wrk ran. */
  seconds: number;
  /** Latency percentiles from `--latency`, µs. */
  latencyUs: { p50: number; p75: number; p90: number; p99: number };
  /** CPU seconds wrk used (all its threads). */
  cpuSeconds: number;
  /** wrk's CPU, % of one core. */
  cpuPercent: number;
  /** wrk's output. */
  text: string;
}

/** Options of {@linkcode runWrk}. */
export interface WrkOptions {
  /** wrk threads (`-t`). */
  threads: number;
  /** Connections (`-c`), each with one request at a time. */
  connections: number;
  /** Length of the run (`-d`), seconds. */
  seconds: number;
  /** A Lua script for wrk (`-s`), e.g. from {@linkcode wrkMixScript}. */
  script?: string;
}

/**
 * Runs wrk to completion and reads its own CPU: wrk runs under `sh`, which reads its own
 * `/proc/$$/stat` once wrk has been reaped, so cutime + cstime are wrk's CPU exactly.
 * The `sh` is a registered child (killed with the rest).
 */
export async function runWrk(url: string, o: WrkOptions): Promise<WrkResult> {
  const args = [`-t${o.threads}`, `-c${o.connections}`, `-d${o.seconds}s`, "--latency"];
  if (o.script) args.push("-s", o.script);
  const c = new Child("wrk", "sh", [
    "-c",
    'wrk "$@"; s=$?; read -r l < /proc/$$/stat; echo "STAT $l"; exit $s',
    "sh",
    ...args,
    url,
  ]);
  const t0 = performance.now();
  const status = await c.exited;
  const wall = (performance.now() - t0) / 1000;
  // Let the pumps take the last output.
  await new Promise((r) => setTimeout(r, 20));
  const text = c.output;
  const stat = /^STAT (.*)$/m.exec(text);
  const parsed = parseWrk(text);
  if (!status.success || !stat || !parsed) throw new Error(`wrk failed:\n${text}`);
  const cpuSeconds = childrenSecondsOfStat(stat[1]);
  return {
    ...parsed,
    cpuSeconds,
    cpuPercent: round1((cpuSeconds / wall) * 100),
    text: text.replace(/^STAT .*\n?/m, ""),
  };
}

/** The figures in wrk's output (run with `--latency`); null when it has no totals. */
export function parseWrk(
  text: string,
): Omit<WrkResult, "cpuSeconds" | "cpuPercent" | "text"> | null {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(text);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!total || !rps) return null;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(text);
    return m ? toUs(Number(m[1]), m[2]) : NaN;
  };
  return {
    requests: Number(total[1]),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
    socketErrors: socket
      ? {
        connect: Number(socket[1]),
        read: Number(socket[2]),
        write: Number(socket[3]),
        timeout: Number(socket[4]),
      }
      : {},
    rps: Number(rps[1]),
    seconds: toUs(Number(total[2]), total[3]) / 1e6,
    latencyUs: { p50: pct("50"), p75: pct("75"), p90: pct("90"), p99: pct("99") },
  };
}

function toUs(v: number, unit: string): number {
  return unit === "us" ? v : unit === "ms" ? v * 1e3 : unit === "s" ? v * 1e6 : v * 60e6;
}

/**
 * A wrk Lua script that draws each request's path from a job-time mix: `/<service>?ms=N`
 * with probability p. Written to `path`; returns it.
 */
export async function wrkMixScript(
  path: string,
  service: string,
  mix: readonly { ms: number; p: number }[],
): Promise<string> {
  let acc = 0;
  const rows = mix.map((e) => {
    acc += e.p;
    return `{ ${acc}, "/${service}?ms=${e.ms}" }`;
  });
  await Deno.writeTextFile(
    path,
    `-- generated by tests/bench/_bench_procs.ts: job times drawn from a mix
local rows = { ${rows.join(", ")} }
local total = ${acc}
request = function()
  local r = math.random() * total
  for i = 1, #rows do
    if r <= rows[i][1] then return wrk.format(nil, rows[i][2]) end
  end
  return wrk.format(nil, rows[#rows][2])
end
`,
  );
  return path;
}
