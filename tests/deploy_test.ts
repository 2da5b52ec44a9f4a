/**
 * The deployment kit (`deploy/`, `.github/workflows/release.yml`) against the code it
 * deploys: the Grafana dashboard queries metrics and labels a balancer exposes, the systemd
 * unit is valid and waits longer than a drain, the Dockerfile copies what the compile task
 * makes and checks a page ep serves. (Docker and GitHub cannot run here; the Dockerfile and
 * the workflow were checked with dockerfile-utils and actionlint when written.)
 */
import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { OUTCOMES } from "../core/observe/outcomes.ts";
import { startNode } from "../mod.ts";
import { parseExposition } from "./_prometheus_parser.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

interface Panel {
  title: string;
  targets?: { expr: string }[];
}

/** `name{k="v", …}` selectors in a PromQL expression: metric, matchers and `by (…)` labels. */
function selectors(expr: string): { metric: string; matchers: [string, string, string][] }[] {
  const out: { metric: string; matchers: [string, string, string][] }[] = [];
  for (const m of expr.matchAll(/\b(ep_[a-z_]+)(?:\{([^}]*)\})?/g)) {
    const matchers: [string, string, string][] = [];
    for (const x of (m[2] ?? "").matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
      matchers.push([x[1], x[2], x[3]]);
    }
    out.push({ metric: m[1], matchers });
  }
  return out;
}

Deno.test("deploy: every metric, label and label value the Grafana dashboard queries is one a running balancer exposes", async () => {
  const dashboard = JSON.parse(await read("deploy/grafana-dashboard.json"));
  const node = await startNode({
    listen: { port: 0 },
    handlers: { functions: { echo: (req) => req.text() } },
  });
  try {
    const client = await connect(`127.0.0.1:${node.addr!.port}`);
    await client.request("echo", "x");
    client.close();
    const text = await (await fetch(`http://127.0.0.1:${node.addr!.port}/_ep/metrics`)).text();
    const families = parseExposition(text);
    const labelsOf = (family: string) => {
      const seen = new Map<string, Set<string>>();
      for (const s of families.get(family)?.samples ?? []) {
        for (const [k, v] of Object.entries(s.labels)) {
          if (!seen.has(k)) seen.set(k, new Set());
          seen.get(k)!.add(v);
        }
      }
      return seen;
    };
    const exprs: string[] = [
      ...(dashboard.panels as Panel[]).flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dashboard.templating.list.flatMap((v: { definition?: string }) =>
        v.definition ? [v.definition] : []
      ),
    ];
    assert.ok(exprs.length >= 16, `${exprs.length} queries`);
    for (const expr of exprs) {
      const sels = selectors(expr);
      assert.ok(sels.length > 0, `no ep metric in ${expr}`);
      const exprLabels = new Set<string>(["le"]);
      for (const { metric, matchers } of sels) {
        const family = metric.replace(/_(bucket|sum|count)$/, "");
        assert.ok(families.has(family), `${expr}: no family ${family}`);
        if (metric !== family) assert.equal(families.get(family)!.type, "histogram", metric);
        const labels = labelsOf(family);
        for (const k of labels.keys()) exprLabels.add(k);
        for (const [k, op, v] of matchers) {
          if (k === "instance") continue; // added by Prometheus when it scrapes
          assert.ok(labels.has(k), `${expr}: ${family} has no label ${k}`);
          if ((op === "=" || op === "!=") && !v.startsWith("$")) {
            const known = k === "outcome" ? new Set<string>(OUTCOMES) : labels.get(k)!;
            assert.ok(known.has(v), `${expr}: ${family}{${k}} is never "${v}"`);
          }
        }
      }
      for (const m of expr.matchAll(/\bby \(([^)]*)\)/g)) {
        for (const k of m[1].split(",").map((s) => s.trim())) {
          if (k !== "instance") assert.ok(exprLabels.has(k), `${expr}: no label ${k} to sum by`);
        }
      }
    }
    // What the brief asks of it: outcomes, p99 wait and service time, workers, slots, memory.
    const all = exprs.join("\n");
    for (
      const needed of [
        "ep_requests_total",
        "ep_queue_wait_seconds_bucket",
        "ep_service_time_seconds_bucket",
        "ep_workers",
        "ep_service_slots",
        "ep_memory_bytes",
      ]
    ) assert.ok(all.includes(needed), needed);
  } finally {
    await node.close();
  }
});

Deno.test("deploy: the systemd unit reloads on SIGHUP, drains on SIGTERM with more time than a drain takes, restarts on failure, and passes systemd-analyze verify", async () => {
  const unit = await read("deploy/ep.service");
  const value = (key: string) => unit.match(new RegExp(`^${key}=(.*)$`, "m"))?.[1];
  assert.equal(value("ExecReload"), "/bin/kill -HUP $MAINPID");
  assert.equal(value("KillSignal"), "SIGTERM");
  assert.equal(value("Restart"), "on-failure");
  // Node.drain's grace is 30 s; systemd must not SIGKILL before it ends.
  assert.ok(Number(value("TimeoutStopSec")) > 30, value("TimeoutStopSec"));
  assert.match(value("ExecStart") ?? "", /^\/usr\/local\/bin\/ep run /);
  let analyze: Deno.CommandOutput | null = null;
  const dir = await Deno.makeTempDir();
  try {
    // Verify the unit as written, with ExecStart pointed at an executable that exists here.
    const standIn = `${dir}/ep`;
    await Deno.copyFile("/bin/true", standIn);
    await Deno.writeTextFile(
      `${dir}/ep.service`,
      unit.replace("/usr/local/bin/ep ", `${standIn} `),
    );
    analyze = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/ep.service`],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err; // no systemd-analyze here
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  if (analyze) {
    const said = new TextDecoder().decode(analyze.stderr) +
      new TextDecoder().decode(analyze.stdout);
    assert.equal(analyze.code, 0, said);
    assert.equal(said.trim(), "", "no warnings");
  }
});

Deno.test("deploy: the Dockerfile copies the binary deno task compile makes, checks /_ep/health, exposes 7070 and runs as a user", async () => {
  const docker = await read("deploy/Dockerfile");
  const tasks = JSON.parse(await read("deno.json")).tasks;
  const output = tasks.compile.match(/--output (\S+)/)[1];
  assert.match(docker, /^RUN deno task compile\b/m);
  assert.match(docker, new RegExp(`^COPY --from=compile /src/${output} /usr/local/bin/ep$`, "m"));
  assert.match(docker, /^EXPOSE 7070$/m);
  assert.match(docker, /^USER ep$/m);
  assert.match(
    docker,
    /^HEALTHCHECK .*\n\s+CMD curl -fsS "http:\/\/127\.0\.0\.1:\$\{EP_PORT\}\/_ep\/health"/m,
  );
  // The health page answers 200 to anyone once a node is ready (as the check needs).
  const node = await startNode({ listen: { port: 0 } });
  try {
    const res = await fetch(`http://127.0.0.1:${node.addr!.port}/_ep/health`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  } finally {
    await node.close();
  }
});

Deno.test("deploy: the release workflow runs on version tags and compiles every target with the files of deno task compile", async () => {
  const wf = await read(".github/workflows/release.yml");
  assert.match(wf, /^on:\n {2}push:\n {4}tags: \["v\*"\]$/m);
  // The embedded files are read from the compile task, not copied (they cannot drift).
  assert.match(wf, /JSON\.parse\(Deno\.readTextFileSync\("deno\.json"\)\)\.tasks\.compile/);
  for (
    const target of [
      "x86_64-unknown-linux-gnu",
      "aarch64-unknown-linux-gnu",
      "x86_64-apple-darwin",
      "aarch64-apple-darwin",
      "x86_64-pc-windows-msvc",
    ]
  ) assert.ok(wf.includes(target), target);
  // The workflow's own snippet, run here, yields every --include of the task.
  const snippet = wf.match(/deno eval '([^']+)'/)![1];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", snippet],
    cwd: new URL(".", ROOT).pathname,
    stdout: "piped",
  }).output();
  const task: string = JSON.parse(await read("deno.json")).tasks.compile;
  const includes = task.match(/--include \S+/g)!;
  assert.ok(includes.some((i) => i.includes("glue.wasm")), task);
  assert.equal(new TextDecoder().decode(out.stdout).trim(), includes.join(" "));
});
