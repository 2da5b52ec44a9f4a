import assert from "node:assert/strict";
import { main } from "./main.ts";

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

Deno.test("an unknown command or flag, or a flag without its value, exits 2 with the usage", async () => {
  for (
    const [args, message] of [
      [["bogus"], 'ep: unknown command "bogus"'],
      [["--bogus"], "ep: Unknown option '--bogus'"],
      [["balancer", "--port"], "ep: Option '--port <value>' argument missing"],
    ] as const
  ) {
    const r = await ep([...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.ok(r.err.startsWith(message), r.err);
    assert.match(r.err, /Usage: ep <command> \[options\]/);
  }
});

Deno.test("ep run without a script exits 2", async () => {
  const r = await ep(["run"]);
  assert.equal(r.code, 2);
  assert.equal(r.err, "ep run: missing script\n\nUsage: ep run <script.lua>");
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
