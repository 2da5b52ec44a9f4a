/**
 * Helpers for tests that run the real `ep` command (`deno run -A mod.ts …`) in a child
 * process, as a user types it: the exit code and what it printed, with an environment that
 * holds none of the runner's `EP_*` variables unless a test sets them.
 *
 * @module
 */
import { MOD, OutputProc } from "./_cluster.ts";

/** What a finished `ep` command did. */
export interface EpResult {
  /** The exit code (137 when the test killed it at its time limit). */
  code: number;
  /** Its standard output. */
  out: string;
  /** Its standard error. */
  err: string;
  /** Whether it was still running at the time limit (and was killed). */
  timedOut: boolean;
}

/** The runner's environment without `EP_*` variables, plus `env`. */
export function epEnv(env: Record<string, string> = {}): Record<string, string> {
  const base = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("EP_")),
  );
  return { ...base, NO_COLOR: "1", ...env };
}

/**
 * Runs `ep args…` to its end (killed after `timeoutMs`, default 20 s) and returns its exit
 * code and output.
 */
export async function ep(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<EpResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, ...args],
    env: epEnv(opts.env),
    clearEnv: true,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }, opts.timeoutMs ?? 20_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr), timedOut };
}

/** A long-running `ep args…` (a balancer, a worker) with its output collected. */
export class EpProc extends OutputProc {
  constructor(args: string[], env: Record<string, string> = {}, waitMs = 30_000) {
    super(Deno.execPath(), ["run", "-A", MOD, ...args], epEnv(env), waitMs);
  }

  /** Sends SIGTERM and waits for the exit; SIGKILL after `ms`. */
  async terminate(ms = 15_000): Promise<Deno.CommandStatus> {
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), ms);
    const status = await this.exited;
    clearTimeout(timer);
    return status;
  }
}

/** A TCP port nothing listens on right now (bound once by the OS, then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The non-empty lines of `text`. */
export function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.trim() !== "");
}

/** A temporary directory holding `files` (name → text); removed by the returned function. */
export async function scriptDir(
  files: Record<string, string>,
): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "ep-cli-" });
  for (const [name, text] of Object.entries(files)) {
    const path = `${dir}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, text);
  }
  return { dir, remove: () => Deno.remove(dir, { recursive: true }) };
}
