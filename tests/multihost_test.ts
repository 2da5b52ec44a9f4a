/**
 * Multi-host faults on real separate hosts made with network namespaces: two balancer
 * hosts, two worker hosts pulling from both, a client host using both balancers. A worker
 * host's link is cut while it holds jobs (no FIN, no RST: its packets vanish) and restored.
 * Asserted: every request answered exactly once (a `worker_lost` is an answer), the
 * balancers drop the silent worker within a few heartbeats and take it back after the link
 * returns. Prints one `FIGURES` line with the detection and recovery times.
 *
 * Skips, saying why, where namespaces cannot be created (not root, no iproute2).
 */
import assert from "node:assert/strict";
import { netnsUnavailable, NsProc, Topology } from "./_netns.ts";

const why = await netnsUnavailable();
if (why) console.warn(`multihost_test: skipped: ${why}`);

const CLIENT = new URL("./fixtures/faults/mh_client.ts", import.meta.url).pathname;
const SERVICES = new URL("./fixtures/faults/services.ts", import.meta.url).pathname;
const TOKEN = "multihost-secret";
const STATUS_TOKEN = "multihost-status";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ClientReport {
  results: { b: number; sent: number; done: number; outcome: string }[];
  timeline: { t: number; b: number; workers: string[] }[];
  unmatched: number;
}

Deno.test({
  name: "multihost: a worker host's link cut and restored: no request lost or answered twice",
  ignore: why !== null,
  async fn() {
    const topo = await Topology.create(1, [
      { name: "b1", n: 1 },
      { name: "b2", n: 2 },
      { name: "w1", n: 11 },
      { name: "w2", n: 12 },
      { name: "c", n: 21 },
    ]);
    const procs: NsProc[] = [];
    try {
      const bAddrs = ["b1", "b2"].map((b) => `${topo.host(b).addr}:7070`);
      for (const b of ["b1", "b2"]) {
        const p = new NsProc(topo.host(b), [
          "balancer",
          "--host",
          topo.host(b).addr,
          "--port",
          "7070",
          "--token",
          TOKEN,
          // The client host reads stats over EP: from another host, only with this token.
          "--status-token",
          STATUS_TOKEN,
        ]);
        procs.push(p);
      }
      await Promise.all(procs.map((p) => p.waitFor(/listening on/, 30_000)));
      const workers = ["w1", "w2"].map((w) =>
        new NsProc(topo.host(w), [
          "worker",
          "--connect",
          bAddrs.join(","),
          "--token",
          TOKEN,
          "--handlers",
          SERVICES,
          "--threads",
          "1",
          "--concurrency",
          "2",
        ])
      );
      procs.push(...workers);
      await Promise.all(
        workers.map((w) =>
          w.waitFor(/Registered with balancer[\s\S]*Registered with balancer/, 30_000)
        ),
      );
      const client = new NsProc(topo.host("c"), [
        "--balancers",
        bAddrs.join(","),
        "--ms",
        "17000",
        "--window",
        "3",
        "--job",
        "150",
        "--status-token",
        STATUS_TOKEN,
      ], { script: CLIENT });
      procs.push(client);
      await client.waitFor(/READY/, 30_000);
      await sleep(3_000);
      const cutAt = Date.now();
      await topo.cut("w1");
      await sleep(6_000);
      const restoreAt = Date.now();
      await topo.restore("w1");
      const status = await Promise.race([client.exited, sleep(60_000).then(() => null)]);
      assert.ok(status, "the client finished (no request hung)");
      assert.equal(status.code, 0, client.output);
      const line = client.output.trim().split("\n").filter((l) => l.startsWith("{")).pop()!;
      const report = JSON.parse(line) as ClientReport;

      // Exactly once: every request settled once, as a reply or an explicit error.
      assert.equal(report.unmatched, 0, "no answer arrived twice");
      const outcomes: Record<string, number> = {};
      for (const r of report.results) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
      for (const k of Object.keys(outcomes)) {
        assert.ok(
          k === "ok" || k === "worker_lost",
          `unexpected outcome ${k}: ${JSON.stringify(outcomes)}`,
        );
      }
      // Requests in flight at the cut were answered after it (redelivered or failed).
      const caught = report.results.filter((r) => r.sent < cutAt && r.done > cutAt + 500);
      const slowest = Math.max(0, ...caught.map((r) => r.done - cutAt));

      // Detection: both balancers dropped w1; recovery: both have it again.
      const w1 = topo.host("w1").addr + ":";
      const has = (e: { workers: string[] }) => e.workers.some((n) => n.includes(w1));
      const dropped = [0, 1].map((b) =>
        report.timeline.find((e) => e.b === b && e.t > cutAt && !has(e))?.t ?? Infinity
      );
      const back = [0, 1].map((b) =>
        report.timeline.find((e) => e.b === b && e.t > restoreAt && has(e))?.t ?? Infinity
      );
      const detectedMs = Math.max(...dropped) - cutAt;
      const recoveredMs = Math.max(...back) - restoreAt;
      assert.ok(detectedMs <= 8_000, `w1 dropped after ${detectedMs} ms`);
      assert.ok(Number.isFinite(recoveredMs), "w1 came back on both balancers");
      // Served all along: the client kept getting answers while w1 was away.
      const during = report.results.filter((r) =>
        r.done > cutAt && r.done < restoreAt && r.outcome === "ok"
      );
      assert.ok(during.length > 20, `${during.length} answers while w1 was cut`);
      console.log(
        `FIGURES multihost ${
          JSON.stringify({
            requests: report.results.length,
            outcomes,
            inFlightAtCut: caught.length,
            inFlightAnsweredWithinMs: slowest,
            detectedMs,
            recoveredMs,
            okWhileCut: during.length,
          })
        }`,
      );
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await topo.destroy();
    }
  },
});
