/**
 * Two clusters that use each other, with real processes: cluster A is a balancer and a Lua
 * worker serving `invoice`; process B listens on its own port serving `front` on its own
 * threads *and* is a worker of A offering `front` there, and `front` calls `invoice` behind A
 * through an upstream. The README's "Two clusters" section is this test's setup.
 */
import assert from "node:assert/strict";
import { Proc, waitStats } from "./_cluster.ts";

async function project(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ep-clusters-" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

async function listening(proc: Proc): Promise<string> {
  const m = await proc.waitFor(/listening on [^:]+:(\d+)/, 20_000);
  return `127.0.0.1:${m[1]}`;
}

Deno.test("two clusters: B serves front on its own port and as A's worker; front calls invoice behind A through an upstream; B's one slot is never promised twice", async () => {
  const dir = await project({
    "a.lua": `ep.listen { port = 0 }\n`,
    "a_worker.lua": `
ep.connect { ep.env("A") }
ep.threads(1)
ep.service("invoice", function(req) return "invoice " .. req.body end)
`,
    "b.lua": `
ep.listen { port = 0 }
ep.connect { ep.env("A") }
ep.upstream("billing", { ep.env("A") })
ep.threads(1)
local running, most = 0, 0
ep.service("front", function(req)
  running = running + 1
  if running > most then most = running end
  if req.query.ms then ep.sleep(tonumber(req.query.ms)) end
  local body, err, kind = ep.call("invoice", req.body, { upstream = "billing", timeout_ms = 5000 })
  running = running - 1
  if not body then return { status = 502, body = kind .. ": " .. err } end
  return { status = 200, headers = { ["x-most"] = tostring(most) }, body = "front(" .. body .. ")" }
end, { slots = 1 })
`,
  });
  const a = new Proc(["run", `${dir}/a.lua`]);
  let aWorker: Proc | null = null;
  let b: Proc | null = null;
  try {
    const aAddr = await listening(a);
    aWorker = new Proc(["run", `${dir}/a_worker.lua`], { A: aAddr });
    b = new Proc(["run", `${dir}/b.lua`], { A: aAddr });
    const bAddr = await listening(b);
    await waitStats(
      aAddr,
      (s) => ["invoice", "front"].every((svc) => s.providers.some((p) => p.services.includes(svc))),
    );
    // On B's own port: served by B's threads (no hop), invoice fetched from cluster A.
    let res = await fetch(`http://${bAddr}/front`, { method: "POST", body: "x" });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "front(invoice x)");
    // On A's port: A dispatches front to B, its worker.
    res = await fetch(`http://${aAddr}/front`, { method: "POST", body: "y" });
    assert.equal(await res.text(), "front(invoice y)");
    // Both balancers load B at once: its one slot runs one job at a time, whoever sent it.
    const all = await Promise.all(
      [aAddr, bAddr, aAddr, bAddr, aAddr, bAddr].map((addr, i) =>
        fetch(`http://${addr}/front?ms=100`, { method: "POST", body: String(i) })
      ),
    );
    for (const [i, r] of all.entries()) {
      assert.equal(await r.text(), `front(invoice ${i})`);
      assert.equal(r.headers.get("x-most"), "1", "never two front jobs at once on one slot");
    }
  } finally {
    await b?.stop();
    await aWorker?.stop();
    await a.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
