/**
 * `ep.spawn`, in real processes: a control script keeps child worker processes of another
 * script running, more of them under load and fewer when idle, and none outlives it, even
 * when it is killed with SIGKILL (a child notices its stdin closing). No timing is asserted;
 * the limits are generous.
 */
import assert from "node:assert/strict";
import { Proc } from "./_cluster.ts";

/** Writes `files` into a fresh temp dir; returns its path. */
async function scripts(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ep-spawn-" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`Gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The pids the parent's log says it started. */
function started(output: string): number[] {
  return [...output.matchAll(/Started child (\d+)/g)].map((m) => Number(m[1]));
}

Deno.test("ep.spawn starts min children, and SIGKILL of the parent leaves no child running", async () => {
  const dir = await scripts({
    "parent.lua": `ep.spawn { script = "child.lua", min = 2, max = 2 }`,
    "child.lua": `ep.every(60000, function() end)`,
  });
  const parent = new Proc(["run", `${dir}/parent.lua`]);
  try {
    await until(() => started(parent.output).length === 2, "two children");
    const pids = started(parent.output);
    assert.ok(pids.every(alive), `children ${pids} run`);
    parent.kill("SIGKILL");
    await parent.exited;
    await until(() => !pids.some(alive), `children ${pids} to exit after their parent was killed`);
  } finally {
    await parent.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ep.spawn in a balancer grows its children while jobs wait past the target, shrinks them when idle, and SIGTERM stops them all; no job is lost", async () => {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const dir = await scripts({
    "parent.lua": `
ep.listen { port = tonumber(ep.env("EP_PORT")) }
ep.spawn { script = "worker.lua", min = 1, max = 2, target_wait_ms = 20 }
`,
    "worker.lua": `
ep.connect("127.0.0.1:" .. ep.env("EP_PORT"))
ep.threads(1)
ep.service("nap", function(req) ep.sleep(40) return "ok" end)
`,
  });
  const parent = new Proc(["run", `${dir}/parent.lua`], { EP_PORT: String(port) });
  const workers = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/_ep/stats`);
    const stats = await res.json();
    return stats.providers.filter((p: { draining: boolean }) => !p.draining).length as number;
  };
  try {
    await until(async () => (await workers().catch(() => 0)) === 1, "the first child to register");
    const statuses: number[] = [];
    let grown = false;
    while (!grown) {
      const batch = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const res = await fetch(`http://127.0.0.1:${port}/nap`, { method: "POST" });
          await res.text();
          return res.status;
        }),
      );
      statuses.push(...batch);
      grown = (await workers()) === 2;
    }
    assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
    assert.equal(started(parent.output).length, 2);
    // Idle: the newest child drains and exits.
    await until(async () => (await workers()) === 1, "the parent to stop a child");
    const pids = started(parent.output);
    await until(() => pids.filter(alive).length === 1, "one child to be left");
    assert.match(parent.output, /Stopping child \d+ \(idle: /);
    parent.kill("SIGTERM");
    assert.equal((await parent.exited).code, 0);
    await until(() => !pids.some(alive), "every child to exit with the parent");
  } finally {
    await parent.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
