/** `ep call` and `ep bench` with `--servers a,b` (failover) and `--retry n`. */
import assert from "node:assert/strict";
import { benchMain } from "../cli/bench.ts";
import { callMain, EXIT } from "../cli/call.ts";
import { JobError, type JobHandler } from "../core/job.ts";
import { serve } from "../core/net/server.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { MOD } from "./_cluster.ts";

const dec = new TextDecoder();

/** A port nothing listens on. */
async function deadAddr(): Promise<string> {
  const s = serve({ port: 0, handler: () => ({}) });
  const port = s.addr.port;
  await s.close();
  return `127.0.0.1:${port}`;
}

/** `busy` is overloaded `failures` times, then answers; `echo` echoes; `sleep` reports. */
function flaky(failures: number): { handler: JobHandler; tries: () => number } {
  let tries = 0;
  const handler: JobHandler = (job) => {
    if (job.service === "busy") {
      if (tries++ < failures) throw new JobError(ErrorCode.OVERLOADED, 'Queue for "busy" is full');
      return { body: `ok after ${tries}` };
    }
    if (job.service === "sleep") return { headers: [["x-slept-us", "0"]], body: "ok" };
    return { body: job.body };
  };
  return { handler, tries: () => tries };
}

async function call(args: string[]) {
  let out = "";
  const err: string[] = [];
  const code = await callMain(args, {
    out: (b) => void (out += dec.decode(b)),
    err: (l) => void err.push(l),
  });
  return { code, out, err: err.join("\n") };
}

Deno.test("ep call --servers skips a server that refuses and calls the next; exits 7 when every one refuses", async () => {
  const dead = await deadAddr();
  const server = serve({ port: 0, handler: flaky(0).handler });
  const live = `127.0.0.1:${server.addr.port}`;
  try {
    const r = await call(["echo", "hi", "--servers", `${dead},${live}`]);
    assert.equal(r.code, EXIT.ok, r.err);
    assert.equal(r.out, "hi");
    const none = await call(["echo", "hi", "--servers", `${dead},${dead}`]);
    assert.equal(none.code, EXIT.refused, none.err);
    assert.match(none.err, /cannot connect to \S+, \S+: no server reachable/);
  } finally {
    await server.close();
  }
});

Deno.test("ep call --retry n sends an overloaded request again and succeeds; without it, exit 4 after one try", async () => {
  const once = flaky(2);
  const s1 = serve({ port: 0, handler: once.handler });
  const again = flaky(2);
  const s2 = serve({ port: 0, handler: again.handler });
  try {
    const plain = await call(["busy", "--addr", `127.0.0.1:${s1.addr.port}`]);
    assert.equal(plain.code, EXIT.overloaded, plain.err);
    assert.equal(once.tries(), 1);
    const r = await call(["busy", "--addr", `127.0.0.1:${s2.addr.port}`, "--retry", "2"]);
    assert.equal(r.code, EXIT.ok, r.err);
    assert.equal(r.out, "ok after 3");
    assert.equal(again.tries(), 3);
  } finally {
    await s1.close();
    await s2.close();
  }
});

Deno.test("ep call: --servers with --addr, --servers or --retry with --http, a bad address or count exit 2", async () => {
  for (
    const args of [
      ["echo", "--servers", "127.0.0.1:1", "--addr", "127.0.0.1:2"],
      ["echo", "--servers", "127.0.0.1:1", "--http"],
      ["echo", "--retry", "1", "--http"],
      ["echo", "--servers", "nohost"],
      ["echo", "--servers", ","],
      ["echo", "--retry", "-1"],
      ["echo", "--retry", "two"],
    ]
  ) {
    const r = await call(args);
    assert.equal(r.code, EXIT.usage, `${args.join(" ")}: ${r.err}`);
    assert.match(r.err, /^ep call: /);
  }
});

Deno.test("ep bench --servers fails over past a dead server and --retry counts its retries", async () => {
  const dead = await deadAddr();
  const f = flaky(3);
  const server = serve({ port: 0, handler: f.handler });
  const out: string[] = [];
  const err: string[] = [];
  try {
    const code = await benchMain([
      "busy",
      "--servers",
      `${dead},127.0.0.1:${server.addr.port}`,
      "--retry",
      "3",
      "--rate",
      "50",
      "--duration",
      "0.3",
      "--json",
      "--quiet",
    ], { out: (t) => void out.push(t), err: (l) => void err.push(l), tty: false });
    assert.equal(code, 0, err.join("\n"));
    const json = JSON.parse(out.join(""));
    assert.deepEqual(json.errors, {});
    assert.equal(json.ok, json.sent);
    assert.equal(json.generator.retries, 3);
    assert.deepEqual(json.target.servers, [dead, `127.0.0.1:${server.addr.port}`]);
  } finally {
    await server.close();
  }
  const usage: string[] = [];
  assert.equal(
    await benchMain(["--http", "--servers", "127.0.0.1:1"], {
      err: (l) => void usage.push(l),
      out: () => {},
    }),
    2,
  );
  assert.match(usage.join(), /for EP/);
});

Deno.test("the real ep call command fails over with --servers (exit 0) and reports exit 7 when none answers", async () => {
  const dead = await deadAddr();
  const server = serve({ port: 0, handler: flaky(0).handler });
  try {
    const run = (servers: string) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MOD, "call", "echo", "real", "--servers", servers],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
    const ok = await run(`${dead},127.0.0.1:${server.addr.port}`);
    assert.equal(ok.code, 0, dec.decode(ok.stderr));
    assert.equal(dec.decode(ok.stdout), "real");
    const refused = await run(`${dead},${dead}`);
    assert.equal(refused.code, 7, dec.decode(refused.stderr));
  } finally {
    await server.close();
  }
});
