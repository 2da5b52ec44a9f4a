/** Helpers for tests with real processes: balancer and worker processes of `mod.ts`. */
import { type Client, connect } from "../core/net/client.ts";

/** Path of `mod.ts`, the ep entry point the processes run. */
export const MOD: string = new URL("../mod.ts", import.meta.url).pathname;
export const SERVICES: string = new URL("./fixtures/services.ts", import.meta.url).pathname;

/** A child process with its stdout and stderr collected into `output`. */
export class OutputProc {
  readonly child: Deno.ChildProcess;
  output = "";
  readonly exited: Promise<Deno.CommandStatus>;
  #listeners: ((text: string) => void)[] = [];
  readonly #waitMs: number;

  /** Spawns `command args…`; `waitMs` is {@linkcode OutputProc.waitFor}'s default. */
  constructor(command: string, args: string[], env: Record<string, string> = {}, waitMs = 10_000) {
    this.#waitMs = waitMs;
    this.child = new Deno.Command(command, {
      args,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...env },
    }).spawn();
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this.output += text;
        for (const l of this.#listeners) l(this.output);
      }
    };
    const pumped = Promise.all([pump(this.child.stdout), pump(this.child.stderr)]);
    // Exited once its output is read too (a process's last lines can arrive after its
    // status); at most 2 s more, for a child of it that keeps a pipe open.
    this.exited = this.child.status.then(async (status) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([pumped, new Promise((r) => timer = setTimeout(r, 2_000))]);
      clearTimeout(timer);
      return status;
    });
  }

  /** Waits until the output matches `re`; returns the match. */
  waitFor(re: RegExp, ms = this.#waitMs): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (text: string) => {
        const m = text.match(re);
        if (m) {
          clearTimeout(timer);
          this.#listeners = this.#listeners.filter((l) => l !== check);
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        this.#listeners = this.#listeners.filter((l) => l !== check);
        reject(new Error(`timed out waiting for ${re}; output:\n${this.output}`));
      }, ms);
      this.#listeners.push(check);
      check(this.output);
    });
  }

  /** Sends a signal (ignored when the process is gone). */
  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** Kills it and waits for it to exit. */
  async stop(): Promise<void> {
    this.kill("SIGKILL");
    await this.exited;
  }
}

/** A child ep process (`deno run -A mod.ts …`) with its output collected. */
export class Proc extends OutputProc {
  constructor(args: string[], env: Record<string, string> = {}) {
    super(Deno.execPath(), ["run", "-A", MOD, ...args], env);
  }
}

/** Starts a balancer process on a free port (or `port`). */
export async function balancer(
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<{ proc: Proc; addr: string; port: number }> {
  const proc = new Proc(["balancer", "--port", "0", ...extra], env);
  const m = await proc.waitFor(/listening on [^:]+:(\d+)/);
  const port = Number(m[1]);
  return { proc, addr: `127.0.0.1:${port}`, port };
}

/** Starts a worker process serving the test services with `slots` single-job threads. */
export function worker(connect: string[], extra: string[] = []): Proc {
  return new Proc([
    "worker",
    "--connect",
    connect.join(","),
    "--handlers",
    SERVICES,
    "--threads",
    "1",
    "--concurrency",
    "1",
    ...extra,
  ]);
}

/** Polls the balancer's stats until `cond` holds. */
export async function waitStats(
  addr: string,
  cond: (s: BalancerStats) => boolean,
  ms = 10_000,
): Promise<BalancerStats> {
  const end = Date.now() + ms;
  let last: BalancerStats | null = null;
  while (Date.now() < end) {
    let c: Client | null = null;
    try {
      c = await connect(addr);
      last = await c.stats() as BalancerStats;
      if (cond(last)) return last;
    } catch {
      // not up yet
    } finally {
      c?.close();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`stats condition not met; last: ${JSON.stringify(last)}`);
}

/** The shape of the balancer's STATS JSON used by the tests. */
export interface BalancerStats {
  services: {
    name: string;
    queued: number;
    providers: number;
    busy: number;
    counters: Record<string, number>;
  }[];
  providers: { name: string; services: string[]; busy: number; draining: boolean }[];
}
