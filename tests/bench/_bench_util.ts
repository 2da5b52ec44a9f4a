/** Helpers for the benchmark scripts: child servers, wrk, medians. */
import { EP_V8_FLAGS } from "../../core/node/children.ts";

/** A server child process that printed `port <n>`. */
export interface ChildServer {
  port: number;
  child: Deno.ChildProcess;
  stop(): Promise<void>;
}

/** Starts `deno run -A <script> ...args` and waits for its `port <n>` line. */
export async function startChild(script: string, args: string[] = []): Promise<ChildServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    env: { DENO_V8_FLAGS: EP_V8_FLAGS }, // the V8 flags of ep's own tasks, for every server
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/port (\d+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${script} exited before printing its port`);
    text += value;
  }
  const port = Number(/port (\d+)/.exec(text)![1]);
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    port,
    child,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
    },
  };
}

/** Runs wrk and returns requests/s. */
export async function wrk(
  url: string,
  options: { connections?: number; seconds?: number; threads?: number } = {},
): Promise<number> {
  const out = await new Deno.Command("wrk", {
    args: [
      `-t${options.threads ?? 1}`,
      `-c${options.connections ?? 50}`,
      `-d${options.seconds ?? 5}s`,
      url,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!out.success || !m) throw new Error(`wrk failed: ${text}`);
  if (/Non-2xx|Socket errors/.test(text)) throw new Error(`wrk saw errors: ${text}`);
  return Number(m[1]);
}

/** Whether a command exists on PATH. */
export async function have(cmd: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`] }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** The median of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Formats a number with thousands separators. */
export function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
