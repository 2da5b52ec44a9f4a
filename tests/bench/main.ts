/**
 * `deno task bench`: runs every `tests/bench/*_bench.ts` script one after another, each in
 * its own process, passing through any arguments. Each script prints its figures and ends
 * with its ratio line.
 *
 *   deno task bench [--only ring,http] [-- script args]
 */
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { only: { type: "string" } },
});
const only = values.only?.split(",");
const dir = new URL(".", import.meta.url);
const scripts: string[] = [];
for await (const e of Deno.readDir(dir)) {
  if (e.isFile && e.name.endsWith("_bench.ts")) scripts.push(e.name);
}
scripts.sort();
let failed = 0;
for (const name of scripts) {
  if (only && !only.some((o) => name.startsWith(o))) continue;
  console.log(`\n== ${name}`);
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(name, dir).pathname, ...positionals],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  if (!status.success) {
    failed++;
    console.log(`${name} failed with exit code ${status.code}`);
  }
}
Deno.exit(failed ? 1 : 0);
