/**
 * The fuzz targets of `deno task fuzz`, briefly, with a fixed seed (`EP_FUZZ_SEED` to
 * change it): a failure prints the case to replay and its input in hex.
 */
import assert from "node:assert/strict";
import { runTarget } from "./_runner.ts";
import { TARGETS } from "./_targets.ts";

const SEED = Number(Deno.env.get("EP_FUZZ_SEED") ?? 0x5eed_f022);
const CASES: Record<string, number> = {
  sniff: 20_000,
  ep: 3_000,
  http: 3_000,
  writer: 3_000,
  socket: 200,
};

for (const [name, cases] of Object.entries(CASES)) {
  Deno.test(`fuzz target "${name}" holds its invariants for ${cases} seeded cases`, async () => {
    const report = await runTarget(TARGETS[name](), { seed: SEED, cases, durationMs: 60_000 });
    const f = report.failure;
    assert.equal(
      f,
      null,
      f
        ? `${f.message}\nreplay: deno task fuzz --target ${name} --seed ${SEED} --case ${f.index}\ninput: ${f.inputHex}`
        : "",
    );
    assert.equal(report.cases, cases);
  });
}
