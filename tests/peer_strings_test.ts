/**
 * A worker that names itself with escape sequences, newlines and bidi overrides (HELLO
 * `name`) is listed as the remote worker it is, and its name reaches the operator inert:
 * in `ep status`, in the metrics, in the access log and in every log line, text or JSON.
 */
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { connect } from "../core/net/client.ts";
import { startNode } from "../core/node/node.ts";
import { statusMain } from "../cli/status.ts";
import { consoleFormatter, jsonLinesFormatter } from "../core/logging.ts";
import { escapeControls } from "../core/escape.ts";
import { EpPeer, isType } from "./fixtures/faults/_ep_peer.ts";
import { unsafeChars } from "./_unsafe_chars.ts";

const EVIL = "evil\x1b[31mRED\x1b[0m\nINF ep·fake: forged line\u2028\u202eexe.txt\x9b2J\\end";

async function captured(fn: () => Promise<number>) {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await fn(), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** Lines of `text` that carry something unsafe. */
function unsafeLines(text: string): string[] {
  return text.split("\n").filter((l) => unsafeChars(l).length > 0);
}

Deno.test("peer strings: a worker named with ANSI, newlines and bidi is listed as remote and shown escaped everywhere", async () => {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { capture: (r) => records.push(r) },
    loggers: [
      { category: ["ep"], lowestLevel: "debug", sinks: ["capture"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  const node = await startNode({
    listen: { port: 0 },
    observe: { accessLog: true },
    balancer: { serviceGraceMs: 2000 },
  });
  const addr = `127.0.0.1:${node.server!.addr.port}`;
  const worker = await EpPeer.open(addr);
  const client = await connect(addr);
  try {
    await worker.hello(2, "", EVIL);
    await worker.send({ type: "register", slots: 1, services: ["echo"] });
    await worker.send({ type: "ready", credit: 1 });
    // One job through the evil worker, for the access log and the per-worker metrics.
    const answered = client.request("echo", "hi");
    const req = await worker.waitFor(isType("request"));
    assert.ok(req, "the worker got the job");
    await worker.send({
      type: "reply",
      id: req.id,
      status: 200,
      freeSlots: 1,
      meta: [],
      body: new TextEncoder().encode("hi"),
    });
    assert.equal((await answered).status, 200);

    // Stats keep the data as it came, and classify the worker by what it is.
    const snap = node.monitor!.snapshot();
    assert.equal(snap.providers.length, 1);
    const p = snap.providers[0];
    assert.equal(p.kind, "remote", "a remote worker, whatever its name");
    assert.equal(p.label, EVIL);
    assert.match(p.address, /^127\.0\.0\.1:\d+$/);

    // ep status: one row for the worker, escaped.
    const status = await captured(() => statusMain(["--addr", addr]));
    assert.equal(status.code, 0, status.err);
    assert.deepEqual(unsafeLines(status.out), [], "ep status prints nothing unsafe");
    const rows = status.out.split("\n");
    const header = rows.findIndex((l) => l.startsWith("WORKER"));
    assert.ok(rows[header + 1].startsWith(escapeControls(EVIL)), rows[header + 1]);
    assert.equal(rows.length, header + 2, "the name did not add lines");

    // Metrics: every worker label escaped.
    const metrics = await (await fetch(`http://${addr}/_ep/metrics`)).text();
    assert.deepEqual(unsafeLines(metrics), [], "metrics carry nothing unsafe");
    assert.ok(metrics.includes("ep_worker_slots{worker="), "the worker has series");

    // Logs, as text and as JSON lines: one line per record, nothing unsafe; JSON keeps the
    // value exactly.
    const named = records.filter((r) => JSON.stringify(r.properties).includes("evil"));
    assert.ok(named.length >= 2, `records naming the worker: ${named.length}`);
    assert.ok(
      records.some((r) => r.category.join(".") === "ep.access"),
      "the access log saw the job",
    );
    for (const r of records) {
      const [format] = consoleFormatter(r) as [string];
      assert.deepEqual(unsafeChars(format), [], `text: ${format}`);
      const json = jsonLinesFormatter(r);
      assert.ok(json.endsWith("\n") && !json.slice(0, -1).includes("\n"));
      assert.deepEqual(unsafeChars(json.slice(0, -1)), [], `json: ${json}`);
      assert.deepEqual(JSON.parse(json).properties, JSON.parse(JSON.stringify(r.properties)));
    }
    const access = records.find((r) => r.category.join(".") === "ep.access")!;
    const [accessText] = consoleFormatter(access) as [string];
    assert.ok(accessText.includes(escapeControls(EVIL)), accessText);
  } finally {
    client.close();
    worker.close();
    await node.close();
    await reset();
  }
});
