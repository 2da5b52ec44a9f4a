/**
 * `deno task fuzz`: runs ep's fuzz targets (`tests/fuzz/_targets.ts`) for a duration each
 * and prints cases per second; on a failure prints the seed, the case and its input in hex
 * and exits 1.
 *
 * ```sh
 * deno task fuzz                          # every target, 10 s each, a random seed
 * deno task fuzz --seconds 60 --seed 42   # longer, reproducible
 * deno task fuzz --target ep,http         # some targets only
 * deno task fuzz --target ep --seed 42 --case 1234   # replay one failing case
 * deno task fuzz --json                   # one JSON report on stdout
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type RunReport, runTarget } from "./_runner.ts";
import { TARGETS } from "./_targets.ts";

const USAGE = `Usage: deno task fuzz [--seconds N] [--seed S] [--target a,b] [--case I] [--json]

  --seconds N   time per target (default 10; fractions ok)
  --seed S      seed of the run (default: random, printed)
  --target a,b  targets among ${Object.keys(TARGETS).join(", ")} (default: all)
  --case I      replay case I of the seed only (with --target)
  --json        print one JSON report instead of lines`;

async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        seconds: { type: "string", default: "10" },
        seed: { type: "string" },
        target: { type: "string" },
        case: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (err) {
    console.error(`fuzz: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const seconds = Number(values.seconds);
  const seed = values.seed === undefined ? (Math.random() * 2 ** 32) >>> 0 : Number(values.seed);
  const names = values.target
    ? values.target.split(",").map((s) => s.trim())
    : Object.keys(TARGETS);
  const only = values.case === undefined ? undefined : Number(values.case);
  const bad = names.filter((n) => !(n in TARGETS));
  if (!(seconds > 0) || !Number.isInteger(seed) || bad.length > 0 || Number.isNaN(only)) {
    console.error(
      `fuzz: invalid arguments${bad.length ? ` (unknown ${bad.join(", ")})` : ""}\n${USAGE}`,
    );
    return 2;
  }
  // An uncaught exception anywhere (a server callback) is a failure, not a crash.
  const uncaught: string[] = [];
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    uncaught.push(String((e.reason as Error)?.stack ?? e.reason));
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    uncaught.push(String((e.error as Error)?.stack ?? e.message));
  });
  if (!values.json) console.log(`fuzz: seed ${seed}, ${seconds} s per target`);
  const reports: RunReport[] = [];
  for (const name of names) {
    const report = await runTarget(TARGETS[name](), {
      seed,
      durationMs: seconds * 1000,
      only,
    });
    reports.push(report);
    if (!values.json) {
      console.log(
        `${name.padEnd(7)} ${String(report.cases).padStart(9)} cases  ` +
          `${String(report.casesPerSecond).padStart(7)} cases/s  ` +
          `rss ${report.rssMiB.start}→${report.rssMiB.end} MiB  ` +
          (report.failure ? "FAILED" : "ok"),
      );
      if (report.failure) {
        const f = report.failure;
        console.log(`  ${f.message}`);
        console.log(`  replay: deno task fuzz --target ${name} --seed ${seed} --case ${f.index}`);
        if (f.inputHex) console.log(`  input (hex): ${f.inputHex}`);
      }
    }
  }
  const failed = reports.some((r) => r.failure !== null) || uncaught.length > 0;
  if (values.json) {
    console.log(JSON.stringify({ seed, seconds, reports, uncaught }, null, 2));
  } else if (uncaught.length > 0) {
    console.log(`uncaught exceptions:\n${uncaught.join("\n")}`);
  }
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
