/**
 * The status page in a real headless Chromium (Debian's `chromium`), driven over the
 * DevTools protocol with Deno's own WebSocket: the page renders, lists the running services
 * and workers, and its numbers change after load is applied. Screenshots (desktop and phone
 * widths) are kept in `tests/artifacts/` (gitignored).
 *
 * Skipped, with a message, when `/usr/bin/chromium` (or `$CHROMIUM`) is missing.
 */
import assert from "node:assert/strict";
import { Balancer } from "../core/balancer/balancer.ts";
import { connect } from "../core/net/client.ts";
import { LocalPoolProvider } from "../core/balancer/local_provider.ts";
import { workerHost } from "../core/balancer/worker_link.ts";
import { Monitor, type MonitorOptions } from "../core/observe/monitor.ts";
import { HandlerPool, TS_HANDLER_RUNTIME } from "../core/threads/pool.ts";
import { serve, type Server } from "../core/net/server.ts";
import { WorkerNode } from "../core/node/worker.ts";
import { escapeControls } from "../core/escape.ts";
import { STATUS_PAGE_HTML } from "../core/observe/status_page.ts";
import { EpPeer } from "./fixtures/faults/_ep_peer.ts";
import { unsafeChars } from "./_unsafe_chars.ts";

const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";
const ARTIFACTS = new URL("./artifacts/", import.meta.url);
const SERVICES = new URL("./fixtures/services.ts", import.meta.url).href;

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

const haveChromium = exists(CHROMIUM);
if (!haveChromium) {
  console.warn(
    `status page test skipped: ${CHROMIUM} not found (Debian: apt-get install chromium)`,
  );
}

// ---- A minimal DevTools protocol client ----

type Json = Record<string, unknown>;

class Cdp {
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>();
  #closed: Promise<void>;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    this.#closed = new Promise((resolve) => ws.addEventListener("close", () => resolve()));
    ws.addEventListener("message", (ev) => {
      const msg = JSON.parse(String(ev.data)) as {
        id?: number;
        result?: Json;
        error?: { message: string };
      };
      if (msg.id === undefined) return; // an event
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`CDP: ${msg.error.message}`));
      else p.resolve(msg.result ?? {});
    });
    ws.addEventListener("close", () => {
      for (const p of this.#pending.values()) p.reject(new Error("CDP connection closed"));
      this.#pending.clear();
    });
  }

  static open(url: string): Promise<Cdp> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.addEventListener("open", () => resolve(new Cdp(ws)), { once: true });
      ws.addEventListener("error", () => reject(new Error(`Cannot open ${url}`)), { once: true });
    });
  }

  send(method: string, params: Json = {}, sessionId?: string, timeoutMs = 20_000): Promise<Json> {
    const id = this.#next++;
    this.#ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`CDP ${method} timed out`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  async close(): Promise<void> {
    this.#ws.close();
    await this.#closed;
  }
}

interface Browser {
  cdp: Cdp;
  close(): Promise<void>;
}

async function launchChromium(): Promise<Browser> {
  const dir = await Deno.makeTempDir({ prefix: "ep-chromium-" });
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      "--hide-scrollbars",
      `--user-data-dir=${dir}`,
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Read stderr to the end (a full pipe would stall Chromium); the first line that matters
  // names the DevTools endpoint.
  let log = "";
  let found: (url: string) => void = () => {};
  const endpoint = new Promise<string>((resolve) => found = resolve);
  const pump = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      log += text;
      const m = log.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) found(m[1]);
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const url = await Promise.race([
    endpoint,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Chromium did not start:\n${log}`)), 30_000);
    }),
    child.status.then((s) => {
      throw new Error(`Chromium exited with ${s.code}:\n${log}`);
    }),
  ]).finally(() => clearTimeout(timer));
  const cdp = await Cdp.open(url);
  return {
    cdp,
    async close() {
      await cdp.send("Browser.close", {}, undefined, 5_000).catch(() => {});
      await cdp.close().catch(() => {});
      const timeout = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await child.status;
      clearTimeout(timeout);
      await pump;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** One browser tab. */
class Tab {
  #cdp: Cdp;
  #session: string;
  constructor(cdp: Cdp, session: string) {
    this.#cdp = cdp;
    this.#session = session;
  }

  static async open(cdp: Cdp, width: number, height: number): Promise<Tab> {
    const { targetId } = await cdp.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await cdp.send("Target.attachToTarget", { targetId, flatten: true });
    const tab = new Tab(cdp, sessionId as string);
    await tab.send("Page.enable");
    await tab.viewport(width, height, false);
    return tab;
  }

  send(method: string, params: Json = {}): Promise<Json> {
    return this.#cdp.send(method, params, this.#session);
  }

  async viewport(width: number, height: number, mobile: boolean): Promise<void> {
    await this.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: mobile ? 2 : 1,
      mobile,
    });
  }

  async navigate(url: string): Promise<void> {
    await this.send("Page.navigate", { url });
  }

  async eval<T>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    });
    if (r.exceptionDetails) throw new Error(`Page error: ${JSON.stringify(r.exceptionDetails)}`);
    return (r.result as { value: T }).value;
  }

  /**
   * Polls `expression` until it is truthy; returns its value. Errors count as "not yet"
   * (the document may still be loading).
   */
  async until<T>(expression: string, what: string, ms = 15_000): Promise<T> {
    const end = Date.now() + ms;
    let last: unknown;
    while (Date.now() < end) {
      try {
        const v = await this.eval<T>(expression);
        if (v) return v;
        last = v;
      } catch (err) {
        last = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`Page never showed ${what}; last: ${JSON.stringify(last)}`);
  }

  /** A PNG of the whole page at the current viewport width. */
  async screenshot(file: URL): Promise<void> {
    const metrics = await this.send("Page.getLayoutMetrics");
    const size = metrics.cssContentSize as { width: number; height: number };
    const shot = await this.send("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: true,
      clip: { x: 0, y: 0, width: size.width, height: size.height, scale: 1 },
    });
    const bin = atob(shot.data as string);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    await Deno.writeFile(file, bytes);
  }
}

// ---- The balancer under test, wired as proposed for startNode ----

interface Rig {
  addr: string;
  balancer: Balancer;
  close(): Promise<void>;
}

async function rig(options: MonitorOptions, withWorkers: boolean): Promise<Rig> {
  const monitor = new Monitor({ version: "0.1.0", ...options });
  const balancer = new Balancer({
    serviceGraceMs: 0,
    observer: monitor,
    internal: monitor.internal,
  });
  const server: Server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(monitor.watchWorkers(balancer)), stats: () => monitor.snapshot() },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  const pools: HandlerPool[] = [];
  let node: WorkerNode | null = null;
  let local: HandlerPool | null = null;
  if (withWorkers) {
    const start = (threads: number) =>
      HandlerPool.start({
        module: TS_HANDLER_RUNTIME,
        moduleOptions: { handlers: SERVICES },
        threads,
        perThreadConcurrency: 1,
      });
    local = await start(2);
    const remote = await start(1);
    pools.push(local, remote);
    balancer.addProvider(new LocalPoolProvider(local, balancer));
    node = WorkerNode.start({ balancers: [addr], pool: remote, name: "worker-a" });
  }
  monitor.attach({
    balancer,
    server,
    pool: () => local,
    lua: () => ({ errors: 0, interrupts: 0 }),
  });
  return {
    addr,
    balancer,
    async close() {
      node?.close();
      monitor.close();
      balancer.close();
      await server.close();
      for (const p of pools) await p.close({ drain: false });
    },
  };
}

interface PageView {
  updates: number;
  services: Record<string, Record<string, string>>;
  workers: { name: string; cells: Record<string, string> }[];
  totals: Record<string, string>;
  sparks: Record<string, number>;
  threads: number;
  overflow: boolean;
}

/** Reads what the page shows, by its data hooks. */
const READ = `(() => {
  const cells = (tr) => Object.fromEntries(
    [...tr.querySelectorAll("[data-field]")].map((td) => [td.dataset.field, td.textContent.trim()]));
  const services = {};
  for (const tr of document.querySelectorAll("#services tr[data-service]")) {
    const c = cells(tr);
    c.rateMax = tr.querySelector("svg.rate")?.dataset.max ?? "";
    c.queueMax = tr.querySelector("svg.queue")?.dataset.max ?? "";
    c.waitMax = tr.querySelector("svg.wait")?.dataset.max ?? "";
    services[tr.dataset.service] = c;
  }
  const workers = [...document.querySelectorAll("#workers tr[data-worker]")]
    .map((tr) => ({ name: tr.dataset.worker, cells: cells(tr) }));
  const totals = {};
  for (const el of document.querySelectorAll("[data-total]")) totals[el.dataset.total] = el.textContent.trim();
  const sparks = {};
  for (const id of ["rate", "queued", "busy"]) sparks[id] = Number(document.getElementById("spark-" + id).dataset.max || 0);
  return {
    updates: Number(document.body.dataset.updates),
    services, workers, totals, sparks,
    threads: document.querySelectorAll("#threads tr[data-thread]").length,
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
  };
})()`;

const num = (s: string | undefined) => Number((s ?? "").replace(/,/g, ""));

Deno.test({
  name: "status page: renders in Chromium, lists services and workers, follows the load",
  ignore: !haveChromium,
  async fn() {
    const r = await rig({}, true);
    const browser = await launchChromium();
    const client = await connect(r.addr);
    try {
      await waitFor(() => r.balancer.stats().providers.length === 2);
      const tab = await Tab.open(browser.cdp, 1280, 900);
      await tab.navigate(`http://${r.addr}/_ep/`);
      await tab.until("Number(document.body.dataset.updates) >= 1", "a first update");
      const before = await tab.until<PageView>(
        `(() => { const v = ${READ}; return v.workers.length === 2 ? v : null; })()`,
        "both workers",
      );
      assert.deepEqual(Object.keys(before.services).sort(), [
        "echo",
        "fail",
        "pid",
        "sleep",
        "stall",
      ]);
      assert.equal(before.services.sleep.ok, "0");
      assert.equal(before.services.sleep.slots, "0 / 3");
      assert.equal(before.services.sleep.providers, "2");
      assert.equal(before.totals.jobs, "0");
      assert.equal(before.totals.providers, "2");
      assert.equal(before.threads, 2, "the local pool's threads");
      const names = before.workers.map((w) => w.cells.name).sort();
      assert.deepEqual(names, ["local pool", "worker-a"]);
      const remote = before.workers.find((w) => w.cells.name === "worker-a")!;
      assert.match(remote.cells.address, /^127\.0\.0\.1:\d+$/);
      assert.equal(remote.cells.state, "ready");
      assert.equal(remote.cells.services, "echo, fail, pid, sleep, stall");
      assert.equal(await tab.eval<string>("document.querySelector('#live').textContent"), "live");

      // Load: 90 jobs of 40 ms on 3 slots (a queue for about a second), 5 failures, HTTP.
      const load = Array.from({ length: 90 }, () => client.request("sleep", "40"));
      const fails = Array.from({ length: 5 }, () => client.request("fail").catch(() => null));
      for (let i = 0; i < 10; i++) {
        await (await fetch(`http://${r.addr}/echo`, { method: "POST", body: `x${i}` })).text();
      }
      await Promise.all([...load, ...fails]);

      const after = await tab.until<PageView>(
        `(() => { const v = ${READ}; return v.services.sleep.ok === "90" && v.sparks.rate > 0 &&
          v.services.sleep.rateMax > 0 ? v : null; })()`,
        "the load",
      );
      assert.ok(after.updates > before.updates);
      assert.equal(after.services.sleep.ok, "90");
      assert.equal(after.services.fail.failed, "5");
      assert.equal(after.services.echo.ok, "10");
      assert.equal(num(after.totals.jobs), 105);
      assert.equal(num(after.totals.ok), 100);
      assert.equal(num(after.totals.failed), 5);
      assert.match(
        after.services.sleep.waitP99,
        /^\d+(\.\d+)? (ms|s)$/,
        "the queue made jobs wait",
      );
      assert.match(after.services.sleep.runP50, /^\d+(\.\d+)? ms$/);
      assert.ok(num(after.services.sleep.queueMax) > 0, "the queue sparkline saw the queue");
      assert.ok(num(after.services.sleep.waitMax) > 0);
      assert.ok(num(after.totals.httpRequests) >= 10);
      assert.ok(after.sparks.rate > 0);
      assert.equal(after.overflow, false);
      await tab.screenshot(new URL("status_page.png", ARTIFACTS));

      // A phone: one column of cards, nothing wider than the screen.
      await tab.viewport(390, 844, true);
      const phone = await tab.until<PageView>(
        `(() => { const v = ${READ}; return v.updates > ${after.updates} ? v : null; })()`,
        "an update at phone width",
      );
      assert.equal(phone.overflow, false, "the page fits a phone's width");
      const layout = await tab.eval<string[]>(
        "[getComputedStyle(document.querySelector('#services thead')).display, " +
          "getComputedStyle(document.querySelector('#services tbody tr')).display]",
      );
      assert.deepEqual(layout, ["none", "grid"], "rows become cards without a header row");
      await tab.screenshot(new URL("status_page_phone.png", ARTIFACTS));
    } finally {
      client.close();
      await browser.close();
      await r.close();
    }
  },
});

Deno.test({
  name: "status page: with a token, the page needs it and passes it on to its polls",
  ignore: !haveChromium,
  async fn() {
    const r = await rig({ access: { token: "t0ken" } }, false);
    const browser = await launchChromium();
    try {
      const tab = await Tab.open(browser.cdp, 1024, 700);
      await tab.navigate(`http://${r.addr}/_ep/`);
      const refused = await tab.until<string>(
        "document.readyState === 'complete' && document.body.innerText",
        "the refusal",
      );
      assert.match(refused, /token is required/);
      await tab.navigate(`http://${r.addr}/_ep/?token=t0ken`);
      await tab.until("Number(document.body.dataset.updates) >= 2", "two polls with the token");
      assert.equal(await tab.eval<string>("document.querySelector('#live').textContent"), "live");
      // No worker: no service rows (the refusal page's /favicon.ico may show as an unknown
      // service, which it is).
      assert.equal(
        await tab.eval<number>("document.querySelectorAll('#services tr[data-service]').length"),
        0,
      );
    } finally {
      await browser.close();
      await r.close();
    }
  },
});

Deno.test({
  name:
    "status page: a worker named with ANSI, newlines and bidi overrides is shown escaped, as a remote worker",
  ignore: !haveChromium,
  async fn() {
    const evil = "w\x1b[31mRED\nline two\u2028\u202eexe.txt\x9b2J";
    const r = await rig({}, false);
    const browser = await launchChromium();
    const worker = await EpPeer.open(r.addr);
    try {
      await worker.hello(2, "", evil);
      await worker.send({ type: "register", slots: 1, services: ["echo"] });
      await waitFor(() => r.balancer.stats().providers.length === 1);
      const tab = await Tab.open(browser.cdp, 1024, 700);
      await tab.navigate(`http://${r.addr}/_ep/`);
      const view = await tab.until<PageView>(
        `(() => { const v = ${READ}; return v.workers.length === 1 ? v : null; })()`,
        "the worker",
      );
      const cells = view.workers[0].cells;
      assert.equal(cells.name, escapeControls(evil));
      assert.deepEqual(unsafeChars(cells.name), []);
      assert.equal(cells.lastSeen === "in process", false, "listed as remote, not local");
      assert.match(cells.address, /^127\.0\.0\.1:\d+$/);
    } finally {
      worker.close();
      await browser.close();
      await r.close();
    }
  },
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `(() => …)()` reading one expression's value from the page. */
const FITS = `(() => {
  const t = document.querySelector("#services");
  return { table: t.scrollWidth, box: t.parentElement.clientWidth, page: document.documentElement.scrollWidth, view: window.innerWidth };
})()`;

Deno.test({
  name:
    "status page: a service's slots busy are its own jobs among its providers' slots (not the shared pool's); the services table fits 1200 px",
  ignore: !haveChromium,
  async fn() {
    const r = await rig({}, true);
    const browser = await launchChromium();
    const client = await connect(r.addr);
    try {
      await waitFor(() => r.balancer.stats().providers.length === 2);
      const tab = await Tab.open(browser.cdp, 1200, 900);
      await tab.navigate(`http://${r.addr}/_ep/`);
      await tab.until("Number(document.body.dataset.updates) >= 1", "a first update");
      // Three slots (two local threads, one remote) all busy with "sleep" for 3 s.
      const load = Array.from(
        { length: 3 },
        () => client.request("sleep", "3000").catch(() => null),
      );
      await waitFor(() => r.balancer.stats().services.find((s) => s.name === "sleep")!.busy === 3);
      const view = await tab.until<PageView>(
        `(() => { const v = ${READ}; return v.services.sleep?.slots.startsWith("3 / 3") ? v : null; })()`,
        "sleep's three busy slots",
      );
      assert.match(view.services.echo.slots, /^0 \/ 3\b/, "echo runs nothing: its row says so");
      const title = await tab.eval<string>(
        `document.querySelector('#services tr[data-service="echo"] [data-field="slots"]').title`,
      );
      assert.match(
        title,
        /^0 of echo's jobs run in its workers' 3 slots; 3 busy with other services$/,
      );
      const fits = await tab.eval<{ table: number; box: number; page: number; view: number }>(FITS);
      assert.ok(fits.table <= fits.box, `services table ${fits.table} px in ${fits.box} px`);
      assert.ok(fits.page <= fits.view, `page ${fits.page} px at ${fits.view} px`);
      await tab.screenshot(new URL("status_page_1200.png", ARTIFACTS));
      await Promise.all(load);
    } finally {
      client.close();
      await browser.close();
      await r.close();
    }
  },
});

Deno.test({
  name:
    "status page: unknown services are one row; failures by outcome, recent errors with request ids, per-worker OK/failed and last error, and the limits in force are shown",
  ignore: !haveChromium,
  async fn() {
    const r = await rig({}, true);
    const browser = await launchChromium();
    const client = await connect(r.addr);
    try {
      await waitFor(() => r.balancer.stats().providers.length === 2);
      for (const name of ["usersx", "usersx", "nope"]) {
        const res = await fetch(`http://${r.addr}/${name}`, {
          headers: { "x-request-id": `rid-${name}` },
        });
        assert.equal(res.status, 503);
        await res.body?.cancel();
      }
      for (let i = 0; i < 4; i++) await client.request("fail").catch(() => null);
      await client.request("echo", "x");
      const tab = await Tab.open(browser.cdp, 1280, 1200);
      await tab.navigate(`http://${r.addr}/_ep/`);
      const view = await tab.until<Record<string, unknown>>(
        `(() => {
          const row = document.querySelector("#services tr[data-unknown]");
          if (!row) return null;
          const f = (el, k) => el.querySelector('[data-field="' + k + '"]')?.textContent.trim();
          const outcomes = {};
          for (const tr of document.querySelectorAll("#outcomes tr[data-service]")) {
            outcomes[tr.dataset.service] = Object.fromEntries(
              [...tr.querySelectorAll("[data-field]")].map((td) => [td.dataset.field, td.textContent.trim()]));
          }
          const errors = [...document.querySelectorAll("#errors tr[data-error]")].map((tr) =>
            [f(tr, "service"), f(tr, "kind"), f(tr, "requestId")].join(" "));
          const workers = Object.fromEntries([...document.querySelectorAll("#workers tr[data-worker]")]
            .map((tr) => [f(tr, "name"), [f(tr, "ok"), f(tr, "failed"), f(tr, "lastError")]]));
          const limits = Object.fromEntries([...document.querySelectorAll("#limits [data-limit]")]
            .map((el) => [el.dataset.limit, el.textContent.trim()]));
          return { unknown: [f(row, "name"), f(row, "failed"), f(row, "names")], outcomes, errors, workers, limits };
        })()`,
        "the unknown services row",
      );
      const unknown = view.unknown as string[];
      assert.equal(unknown[0], "unknown services");
      assert.equal(unknown[1], "3");
      assert.equal(unknown[2], "usersx 2, nope 1");
      const outcomes = view.outcomes as Record<string, Record<string, string>>;
      assert.equal(outcomes.fail.error, "4");
      assert.equal(outcomes.fail.timeout, "0");
      assert.equal(outcomes.echo.ok, "1");
      assert.equal(outcomes["unknown services"].no_service, "3");
      const errors = view.errors as string[];
      assert.ok(errors.includes("usersx no_service rid-usersx"), errors.join("\n"));
      assert.ok(errors.some((e) => /^fail handler_error [0-9a-f]{16}$/.test(e)), errors.join("\n"));
      const workers = view.workers as Record<string, string[]>;
      const failed = Object.values(workers).reduce((n, w) => n + Number(w[1]), 0);
      assert.equal(failed, 4, JSON.stringify(workers));
      assert.ok(Object.values(workers).some((w) => /^handler_error [0-9a-f]{16}$/.test(w[2])));
      const limits = view.limits as Record<string, string>;
      assert.equal(limits.maxQueue, "10,000");
      assert.equal(limits.defaultTimeoutMs, "30 s");
      assert.equal(limits.retries, "1");
      await tab.screenshot(new URL("status_page_errors.png", ARTIFACTS));
    } finally {
      client.close();
      await browser.close();
      await r.close();
    }
  },
});

/** Clicks the first element matching `selector` in the page. */
function click(tab: Tab, selector: string): Promise<unknown> {
  return tab.eval(`(() => { const b = document.querySelector(${JSON.stringify(selector)});
    if (!b) throw new Error("no " + ${JSON.stringify(selector)}); b.click(); return true; })()`);
}

for (const token of [undefined, "t0ken"]) {
  Deno.test({
    name: `status page actions${
      token ? " (with a token)" : ""
    }: drain, disable and enable a worker and set a service's max queue, through the admin API`,
    ignore: !haveChromium,
    async fn() {
      const r = await rig(token ? { access: { token } } : {}, true);
      const browser = await launchChromium();
      try {
        await waitFor(() => r.balancer.stats().providers.length === 2);
        const admin = (name: string) =>
          r.balancer.stats().providers.find((p) => p.name.includes(name))!.admin;
        const tab = await Tab.open(browser.cdp, 1280, 1000);
        await tab.navigate(`http://${r.addr}/_ep/${token ? `?token=${token}` : ""}`);
        const row = `#workers tr[data-worker*="worker-a"]`;
        await tab.until(
          `document.querySelector('${row} button[data-action="disable"]')`,
          "the buttons",
        );
        await click(tab, `${row} button[data-action="disable"]`);
        await waitFor(() => admin("worker-a") === "disabled");
        await tab.until(
          `document.querySelector('${row} [data-field="state"]').textContent.trim() === "disabled"`,
          "the disabled state",
        );
        await click(tab, `${row} button[data-action="enable"]`);
        await waitFor(() => admin("worker-a") === null);
        await click(tab, `#workers tr[data-worker="local pool"] button[data-action="drain"]`);
        await waitFor(() => admin("local pool") === "drained");
        await tab.until(
          `document.querySelector('#workers tr[data-worker="local pool"] [data-field="history"]')?.textContent.includes("drained")`,
          "the state history",
        );
        await tab.eval(`(() => {
          const input = document.querySelector('#queues tr[data-service="sleep"] input');
          input.value = "7";
          return true;
        })()`);
        await click(tab, `#queues tr[data-service="sleep"] button[data-action="set"]`);
        await waitFor(() =>
          r.balancer.stats().services.find((s) => s.name === "sleep")!.maxQueue === 7
        );
        // A refusal is shown, not swallowed.
        await tab.eval(`(() => {
          document.querySelector('#queues tr[data-service="sleep"] input').value = "-3";
          return true;
        })()`);
        await click(tab, `#queues tr[data-service="sleep"] button[data-action="set"]`);
        const shown = await tab.until<string>(
          `document.querySelector("#notice.on.bad")?.textContent`,
          "the refusal",
        );
        assert.match(shown, /Invalid value/);
      } finally {
        await browser.close();
        await r.close();
      }
    },
  });
}

/**
 * A busy production snapshot, wider than the rig's: long names with descriptions, five-digit
 * queues, four-digit latencies, large counters, every failure outcome.
 */
function busySnapshot(real: Json): Json {
  const s = structuredClone(real) as Json & { services: Json[]; providers: Json[] };
  const base = s.services[0];
  const series = (v: number) => Array.from({ length: 60 }, (_, i) => v * (1 + (i % 7) / 10));
  s.services = [
    "api/users/profile-images",
    "billing/invoices.render-pdf",
    "search.autocomplete",
  ].map((name, i) => ({
    ...base,
    name,
    description: "Renders and resizes the images users upload to their profile pages",
    version: "12.4.0-rc.3",
    queued: 12_345 + i,
    maxQueue: 100_000,
    rate: 12_345.6,
    busy: 640,
    slots: 680,
    providersBusy: 676,
    providers: 124,
    queueWaitMs: { p50: 1_234.5, p99: 12_345.6 },
    serviceMs: { p50: 2_345.6, p99: 23_456.7 },
    outcomes: {
      ok: 123_456_789,
      error: 1_234_567,
      timeout: 234_567,
      overloaded: 345_678,
      no_service: 0,
      worker_lost: 4_567,
      shutting_down: 12,
      cancelled: 3,
    },
    series: { rate: series(12_345.6), queued: series(12_345), waitP99Ms: series(12_345.6) },
  }));
  return s;
}

Deno.test({
  name:
    "status page: the services table of a busy balancer (long names and descriptions, large numbers) fits 1200 px without scrolling",
  ignore: !haveChromium,
  async fn() {
    const r = await rig({}, true);
    const browser = await launchChromium();
    let stand: Deno.HttpServer<Deno.NetAddr> | null = null;
    try {
      await waitFor(() => r.balancer.stats().providers.length === 2);
      const real = await (await fetch(`http://${r.addr}/_ep/stats`)).json();
      const snapshot = JSON.stringify(busySnapshot(real));
      // The page as the balancer serves it, polling a stand-in for the busy snapshot.
      stand = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/_ep/") {
          return new Response(STATUS_PAGE_HTML, { headers: { "content-type": "text/html" } });
        }
        if (path === "/_ep/stats") {
          return new Response(snapshot, { headers: { "content-type": "application/json" } });
        }
        return new Response("not found", { status: 404 });
      });
      const tab = await Tab.open(browser.cdp, 1200, 900);
      await tab.navigate(`http://127.0.0.1:${stand.addr.port}/_ep/`);
      await tab.until(
        `document.querySelector('#services tr[data-service="api/users/profile-images"]')`,
        "the busy services",
      );
      const fits = await tab.eval<{ table: number; box: number; page: number; view: number }>(FITS);
      await tab.screenshot(new URL("status_page_1200_busy.png", ARTIFACTS));
      assert.ok(fits.table <= fits.box, `services table ${fits.table} px in ${fits.box} px`);
      assert.ok(fits.page <= fits.view, `page ${fits.page} px at ${fits.view} px`);
    } finally {
      await stand?.shutdown();
      await browser.close();
      await r.close();
    }
  },
});

Deno.test({
  name:
    "status page: a pool that grows and shrinks shows its thread count and its last changes with their reasons",
  ignore: !haveChromium,
  async fn() {
    const { startNode } = await import("../core/node/node.ts");
    const node = await startNode({
      listen: { port: 0 },
      handlers: {
        options: { handlers: SERVICES },
        concurrency: 1,
        scale: { min: 1, max: 4, targetWaitMs: 50 },
      },
    });
    const browser = await launchChromium();
    try {
      const pool = node.pool as HandlerPool;
      pool.grow("wait p99 99 ms > 50 ms (sleep)");
      await waitFor(() => pool.threads === 2);
      pool.retire("idle: 0 of 2 slots busy");
      const tab = await Tab.open(browser.cdp, 1280, 900);
      await tab.navigate(`http://127.0.0.1:${node.server!.addr.port}/_ep/`);
      const shown = await tab.until<string[]>(
        `(() => { const e = [...document.querySelectorAll("#threads-scale [data-scale]")];
          return e.length === 3 ? e.map((x) => x.textContent) : null; })()`,
        "the scaling line",
      );
      assert.equal(shown[0], "1 thread \u00b7 1 added, 1 retired");
      assert.match(shown[1], /^\u2193 1 (now|\d+s ago): idle: 0 of 2 slots busy$/);
      assert.match(shown[2], /^\u2191 2 (now|\d+s ago): wait p99 99 ms > 50 ms \(sleep\)$/);
    } finally {
      await browser.close();
      await node.close();
    }
  },
});

Deno.test({
  name:
    "status page: a pool whose slots scale on fixed threads shows its slot count and its last changes",
  ignore: !haveChromium,
  async fn() {
    const { startNode } = await import("../core/node/node.ts");
    const node = await startNode({
      listen: { port: 0 },
      handlers: {
        options: { handlers: SERVICES },
        threads: 1,
        concurrency: 4,
        scale: { unit: "slots", min: 1, max: 4, targetWaitMs: 50 },
      },
    });
    const browser = await launchChromium();
    try {
      const pool = node.pool as HandlerPool;
      pool.grow("wait p99 99 ms > 50 ms (sleep)");
      const tab = await Tab.open(browser.cdp, 1280, 900);
      await tab.navigate(`http://127.0.0.1:${node.server!.addr.port}/_ep/`);
      const shown = await tab.until<string[]>(
        `(() => { const e = [...document.querySelectorAll("#threads-scale [data-scale]")];
          return e.length === 2 ? e.map((x) => x.textContent) : null; })()`,
        "the scaling line",
      );
      assert.equal(shown[0], "2 slots on 1 thread \u00b7 1 added, 0 taken back");
      assert.match(shown[1], /^\u2191 2 slots (now|\d+s ago): wait p99 99 ms > 50 ms \(sleep\)$/);
    } finally {
      await browser.close();
      await node.close();
    }
  },
});
