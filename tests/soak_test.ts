/**
 * The soak (`deno task soak`) in CI: 45 s by default (`EP_SOAK_MINUTES` to change it; the
 * CLI's own default is one minute), failing on any error, a process that dies, or RSS
 * growth past the soak's stated bound (+64 MiB after warm-up, see tests/soak/main.ts).
 */
import assert from "node:assert/strict";
import type { SoakReport } from "./soak/main.ts";

const MINUTES = Deno.env.get("EP_SOAK_MINUTES") ?? "0.75";
const SOAK = new URL("./soak/main.ts", import.meta.url).pathname;

Deno.test(`soak: ${MINUTES} min of the heavy-tail mix at 85 % of capacity: no error, no leak`, async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SOAK, "--minutes", MINUTES, "--json"],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  const json = stdout.slice(stdout.indexOf("{"));
  let report: SoakReport;
  try {
    report = JSON.parse(json) as SoakReport;
  } catch {
    throw new Error(`no report (exit ${out.code}):\n${stdout}\n${stderr}`);
  }
  console.log(
    `FIGURES soak ${
      JSON.stringify({
        ratePerS: report.ratePerS,
        capacityPerS: report.capacityPerS,
        windows: report.windows.map((w) => [w.fromS, w.p50Ms, w.p99Ms, w.sent]),
        rssMiB: report.processes.map((p) => [p.name, p.rssMiB.start, p.rssMiB.end, p.rssMiB.max]),
        errors: report.errors,
      })
    }`,
  );
  assert.deepEqual(report.failures, []);
  assert.equal(out.code, 0, stderr);
  assert.equal(report.errors, 0);
  assert.ok(report.windows.length >= 2, "latency reported per window");
  assert.ok(report.windows.every((w) => w.ok === w.sent && w.sent > 0));
  assert.equal(report.processes.length, 6, "balancer, 4 workers, generator");
  for (const p of report.processes) {
    if (p.name !== "generator") assert.ok(p.rssMiB.growth <= report.rssBoundMiB, p.name);
  }
});
