import assert from "node:assert/strict";
import { main } from "./main.ts";
import { SETTINGS } from "./flags.ts";

/** Runs `main(args)` with console.log/error captured. */
async function ep(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const code = await main(args);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("ep help, --help, -h and no command print the usage and exit 0", async () => {
  for (const args of [["help"], ["--help"], ["-h"], [], ["worker", "--help"]]) {
    const r = await ep(args);
    assert.equal(r.code, 0, args.join(" "));
    assert.match(r.out, /^ep: a runtime for background micro services/, args.join(" "));
    assert.match(r.out, /--status-public/);
    assert.equal(r.err, "");
  }
});

Deno.test("ep version prints the version and exits 0", async () => {
  const r = await ep(["version", "--log-json", "--status-public"]);
  assert.equal(r.code, 0);
  assert.equal(r.out, "ep 0.1.0");
});

Deno.test("an unknown command or flag, or a flag without its value, exits 2 with one line and the hint to use --help", async () => {
  for (
    const [args, message] of [
      [["bogus"], 'ep: Unknown command "bogus" (see ep --help)'],
      [["--bogus"], 'ep: Unknown option "--bogus" (see ep --help)'],
      [["balancer", "--port"], "ep: Option --port needs a value (see ep --help)"],
      [["balancer", "--port", "--threads", "1"], "ep: Option --port needs a value (see ep --help)"],
      [["worker", "extra"], 'ep worker: Unexpected argument "extra" (see ep --help)'],
      [["balancer", "--log-json=yes"], "ep: Option --log-json takes no value (see ep --help)"],
    ] as const
  ) {
    const r = await ep([...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.err, message);
    assert.equal(r.out, "");
  }
});

Deno.test("ep run without a script exits 2", async () => {
  const r = await ep(["run"]);
  assert.equal(r.code, 2);
  assert.equal(r.err, "ep run: Missing script (ep run <script.lua>; see ep --help)");
});

Deno.test("ep --help lists every setting with its flag, environment variable and default", async () => {
  const r = await ep(["--help"]);
  for (const s of SETTINGS) {
    const lead = s.flag ? `--${s.flag} ` : `${s.env} `;
    const row = r.out.split("\n").find((l) => l.trimStart().startsWith(lead));
    assert.ok(row, `${lead}in the help`);
    if (s.env) assert.ok(row.includes(s.env), `${s.env} beside --${s.flag}`);
    assert.ok(row.includes(s.default), `the default of --${s.flag}`);
  }
});

Deno.test("the command may come after flags: ep --port 1 call ... runs call with --port", async () => {
  const r = await ep(["--timeout", "x", "call", "echo"]);
  assert.equal(r.code, 2);
  assert.equal(r.err, 'ep call: --timeout "x" is not a duration: milliseconds, more than 0');
});

Deno.test("call, bench and status parse their own flags and print their own usage", async () => {
  const call = await ep(["call"]);
  assert.equal(call.code, 2);
  assert.match(call.err, /^ep call: missing service name\n\nep call: send one request/);
  const bench = await ep(["bench", "--help"]);
  assert.equal(bench.code, 0);
  assert.match(bench.out, /^ep bench: an open-loop load generator/);
  const status = await ep(["status", "--help"]);
  assert.equal(status.code, 0);
  assert.match(status.out, /^Usage: ep status \[options\]/);
});
