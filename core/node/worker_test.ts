/**
 * The module worker's credit policy (SPEC.md §9.5, the module doc of `worker.ts`), over
 * in-memory transports: each balancer is a fake speaking EP on the other end of a
 * `memoryPair`, and the pool is a fake whose jobs the test finishes by hand. No socket, no
 * handler thread; the only real timers are the worker's own (its 100 ms tick, and a
 * back-off of about a millisecond before a reconnect).
 */
import assert from "node:assert/strict";
import { EpDecoder } from "../../protocol/ep_decoder.ts";
import { EpEncoder } from "../../protocol/ep_encoder.ts";
import {
  DEFAULT_MAX_PAYLOAD,
  type Frame,
  NOT_APPLICABLE,
  PROTOCOL_VERSION,
} from "../../protocol/ep_frames.ts";
import { memoryPair, type MemoryTransport } from "../net/memory_transport.ts";
import type { JobReply, PoolJob, ReplyCallback } from "../threads/pool.ts";
import {
  type CreditSource,
  nextCredit,
  olderWorkHeld,
  WorkerNode,
  type WorkerPool,
} from "./worker.ts";
import { int, mulberry32, pick, type Rng } from "../../tests/fuzz/_mutate.ts";
import { JobError, JobTimeoutError } from "../errors.ts";
import { ErrorCode } from "../../protocol/errors.ts";

const SERVICE = "svc";

/** A pool with `slots` slots whose jobs run until the test finishes them. */
class FakePool implements WorkerPool {
  readonly services: readonly string[] = [SERVICE];
  onSlotsAvailable: (() => void) | undefined = undefined;
  readonly running: { job: PoolJob; done: ReplyCallback; freed?: () => void }[] = [];
  #slots: number;

  constructor(slots: number) {
    this.#slots = slots;
  }
  get freeSlots(): number {
    return Math.max(0, this.#slots - this.running.length);
  }
  get concurrency(): number {
    return this.#slots;
  }
  // Growing and shrinking, one slot per thread (as HandlerPool.grow and retire).
  onResize: (() => void) | undefined = undefined;
  threadsStarting = 0;
  readonly perThreadConcurrency = 1;
  readonly scaled: string[] = [];
  get threads(): number {
    return this.#slots;
  }
  grow(reason = ""): boolean {
    this.threadsStarting++;
    this.scaled.push(`grow ${reason}`);
    return true;
  }
  /** The thread added last is ready: its slot counts. */
  ready(): void {
    this.threadsStarting--;
    this.#slots++;
    this.onResize?.();
    this.onSlotsAvailable?.();
  }
  retire(reason = ""): boolean {
    if (this.#slots <= 1) return false;
    this.#slots--;
    this.scaled.push(`retire ${reason}`);
    this.onResize?.();
    return true;
  }
  get jobsInFlight(): number {
    return this.running.length;
  }
  serves(service: string): boolean {
    return this.services.includes(service);
  }
  submit(job: PoolJob, done: ReplyCallback, freed?: () => void): boolean {
    if (this.freeSlots <= 0) return false;
    this.running.push({ job, done, freed });
    return true;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  /** Pool job ids cancelled, in order. */
  readonly cancelled: number[] = [];
  /**
   * As `HandlerPool.cancel`: answered `cancelled` now; its slot stays taken until its
   * handler ends ({@linkcode FakePool.finish}), which then says so (`onSlotsAvailable`).
   */
  cancel(id: number): boolean {
    const r = this.running.find((x) => x.job.id === id);
    if (r === undefined || this.cancelled.includes(id)) return false;
    this.cancelled.push(id);
    const done = r.done;
    r.done = () => this.onSlotsAvailable?.(); // the late reply is dropped; the slot is free
    queueMicrotask(() => done(new JobError(ErrorCode.CANCELLED, "Cancelled"), null));
    return true;
  }
  /** Pool job ids timed out, in order. */
  readonly timedOut: number[] = [];
  /**
   * As `HandlerPool`'s deadline: the `i`-th running job is answered `timeout` now (the
   * pool's `JobTimeoutError`); its slot stays taken until its handler ends
   * ({@linkcode FakePool.finish}).
   */
  timeOut(i = 0): void {
    const r = this.running[i];
    this.timedOut.push(r.job.id);
    const done = r.done;
    r.done = () => this.onSlotsAvailable?.();
    done(new JobTimeoutError(100), null);
  }
  /** Whether the `i`-th running job was answered already (cancelled or timed out). */
  answered(i: number): boolean {
    const id = this.running[i].job.id;
    return this.cancelled.includes(id) || this.timedOut.includes(id);
  }
  /**
   * Finishes the `i`-th running job (oldest first) with an empty 200 reply: its slot is
   * free (`freed`, as a pool's release), then its reply is delivered (dropped when it was
   * answered already, and `onSlotsAvailable` called instead).
   */
  finish(i = 0): void {
    const [{ job, done, freed }] = this.running.splice(i, 1);
    const reply: JobReply = { id: job.id, status: 200, meta: new Uint8Array(0), body: job.body };
    freed?.();
    done(null, reply);
  }
}

/** What a fake balancer saw, one line per frame (heartbeats apart). */
function describe(f: Frame): string | null {
  switch (f.type) {
    case "hello":
      return `HELLO role ${f.role}`;
    case "register":
      return `REGISTER ${f.slots} ${f.services.join(",")}` +
        (f.hedgeMs ? ` hedge ${f.hedgeMs.join(",")}` : "");
    case "ready":
      return `READY ${f.credit}`;
    case "reply":
      return `REPLY ${f.id}`;
    case "error":
      return `ERROR ${f.id} ${f.code}`;
    case "drain":
      return `DRAIN ${f.graceMs}`;
    case "heartbeat":
      return null;
    default:
      return f.type.toUpperCase();
  }
}

/**
 * A balancer on the far end of the worker's in-memory connections: answers HELLO with
 * WELCOME (choosing the highest version both speak, up to its own), counts the credit it was
 * granted, and sends REQUESTs only within it.
 */
class FakeBalancer {
  readonly prefetch: number;
  /** The highest EP version it speaks (1: as before version 2 existed). */
  readonly speaks: number;
  /** Connections the worker opened to it. */
  sessions = 0;
  /** Granted (READY) and not used by a REQUEST, in the current session. */
  credit = 0;
  /** The preface version byte and the HELLO of the current session. */
  preface = 0;
  hello: Extract<Frame, { type: "hello" }> | null = null;
  /** The last REGISTER of the current session. */
  registered: Extract<Frame, { type: "register" }> | null = null;
  /** Frames received since the last {@linkcode take}, described. */
  #seen: string[] = [];
  #t: MemoryTransport | null = null;
  #encoder = new EpEncoder();
  #decoder: EpDecoder | null = null;
  #nextId = 1;

  constructor(prefetch: number, speaks = PROTOCOL_VERSION) {
    this.prefetch = prefetch;
    this.speaks = speaks;
  }

  /** Takes the worker's end of a new connection. */
  accept(t: MemoryTransport): void {
    this.#t = t;
    this.sessions++;
    this.credit = 0;
    this.#encoder.version = 1;
    let preface = 4; // the preface is not a frame
    const decoder = this.#decoder = new EpDecoder({
      frame: (f) => this.#onFrame(f),
      error: (e) => assert.fail(`the worker sent a bad frame: ${e.message}`),
    });
    t.start({
      data: (chunk) => {
        const skip = Math.min(preface, chunk.length);
        if (skip > 0 && preface === 4) this.preface = chunk[3] ?? 0;
        preface -= skip;
        if (skip < chunk.length) decoder.push(chunk.subarray(skip));
      },
      end: () => {},
    });
  }

  #onFrame(f: Frame): void {
    const line = describe(f);
    if (line !== null) this.#seen.push(line);
    if (f.type === "hello") {
      this.hello = f;
      const version = Math.min(f.maxVersion, this.speaks);
      this.#send({
        type: "welcome",
        version,
        maxPayload: DEFAULT_MAX_PAYLOAD,
        // Long enough that no heartbeat timeout can fire during a test.
        heartbeatMs: 60_000,
        prefetch: this.prefetch,
        serverName: "fake",
      });
      this.#encoder.version = version;
      this.#decoder!.version = version;
    } else if (f.type === "register") {
      this.registered = f;
    } else if (f.type === "ready") {
      this.credit += f.credit;
    }
  }

  #send(f: Frame): void {
    this.#t!.write(this.#encoder.encode(f));
  }

  /**
   * Sends a REQUEST using one credit; `queueDepth` is what it reports waiting, and (version
   * 2) `oldestWaitMs` how long the oldest of those has waited.
   */
  request(queueDepth: number, oldestWaitMs = 0): number {
    assert.ok(this.credit > 0, "the fake balancer sends only within its credit");
    this.credit--;
    const id = this.#nextId++;
    this.#send({
      type: "request",
      id,
      deadlineMs: 0,
      priority: 0,
      attempt: 0,
      queueDepth,
      oldestWaitMs,
      service: SERVICE,
      meta: [],
      body: new Uint8Array(0),
    });
    return id;
  }

  /**
   * A HEARTBEAT reporting `queueDepth` jobs waiting for the worker's services and (version
   * 2) how long the oldest has waited.
   */
  heartbeat(queueDepth: number, oldestWaitMs = 0): void {
    this.#send({
      type: "heartbeat",
      seq: 1,
      freeSlots: NOT_APPLICABLE,
      queueDepth,
      oldestWaitMs,
    });
  }

  drain(graceMs: number): void {
    this.#send({ type: "drain", graceMs });
  }

  /** Cancels REQUEST `id`. */
  cancel(id: number): void {
    this.#send({ type: "cancel", id });
  }

  /** Closes the connection from the balancer's side. */
  hangUp(): void {
    this.#t!.close();
  }

  /** The frames seen since the last call. */
  take(): string[] {
    return this.#seen.splice(0);
  }
}

/** Lets every frame in flight be delivered and answered (memory transports use microtasks). */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2_000 && !cond(); i++) await new Promise((r) => setTimeout(r, 1));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

/** A worker with `slots` slots and the given balancers, connected and welcomed. */
async function startWorker(
  slots: number,
  balancers: FakeBalancer[],
  options: { prefetch?: number; hedge?: ReadonlyMap<string, number | null> } = {},
): Promise<{ node: WorkerNode; pool: FakePool }> {
  const pool = new FakePool(slots);
  const byAddr = new Map(balancers.map((b, i) => [`balancer-${i}:7070`, b]));
  const node = WorkerNode.start({
    balancers: [...byAddr.keys()],
    pool,
    prefetch: options.prefetch,
    hedge: options.hedge,
    reconnect: { minMs: 1, maxMs: 1 },
    dial: (addr) => {
      const [worker, balancer] = memoryPair();
      byAddr.get(addr)!.accept(balancer);
      return Promise.resolve(worker);
    },
  });
  await until(() => node.connected === balancers.length, "every balancer to welcome");
  await settle();
  return { node, pool };
}

Deno.test("worker grants slots + prefetch at start, after HELLO and REGISTER", async () => {
  const a = new FakeBalancer(2);
  const { node } = await startWorker(3, [a]);
  try {
    assert.deepEqual(a.take(), ["HELLO role 2", `REGISTER 3 ${SERVICE}`, "READY 5"]);
    assert.equal(a.credit, 5);
  } finally {
    node.close();
  }
});

Deno.test("worker grants the smaller of its own prefetch and the balancer's", async () => {
  const a = new FakeBalancer(4);
  const { node } = await startWorker(2, [a], { prefetch: 1 });
  try {
    assert.deepEqual(a.take(), ["HELLO role 2", `REGISTER 2 ${SERVICE}`, "READY 3"]);
  } finally {
    node.close();
  }
});

Deno.test("worker grants one credit per freed slot, after the answer that freed it", async () => {
  const a = new FakeBalancer(2);
  const { node, pool } = await startWorker(3, [a]);
  try {
    a.take();
    // All five credits used: three jobs run, two wait in the worker (prefetched).
    const ids = [1, 2, 3, 4, 5].map(() => a.request(0));
    await settle();
    assert.deepEqual(a.take(), []);
    assert.equal(node.held, 5);
    assert.equal(pool.running.length, 3);
    for (const id of ids) {
      pool.finish();
      await settle();
      assert.deepEqual(a.take(), [`REPLY ${id}`, "READY 1"]);
    }
    assert.equal(a.credit, 5);
    assert.equal(node.held, 0);
  } finally {
    node.close();
  }
});

Deno.test("worker gives a freed slot to the balancer holding less credit when none has work waiting", async () => {
  const a = new FakeBalancer(0);
  const b = new FakeBalancer(0);
  const { node, pool } = await startWorker(2, [a, b]);
  try {
    // A was welcomed first and holds all the capacity (2); B none.
    assert.equal(a.credit, 2);
    assert.equal(b.credit, 0);
    a.take();
    b.take();
    a.request(0);
    a.request(0);
    await settle();
    // Both hold 0 credit: the tie goes to the first balancer.
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), ["REPLY 1", "READY 1"]);
    assert.deepEqual(b.take(), []);
    // A holds 1, B 0: the next freed slot goes to B.
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), ["REPLY 2"]);
    assert.deepEqual(b.take(), ["READY 1"]);
  } finally {
    node.close();
  }
});

Deno.test("worker, balancers that report no waits (EP v1): a freed slot goes to the deeper queue per credit, and to one with work waiting over one holding less credit", async () => {
  const a = new FakeBalancer(1);
  const b = new FakeBalancer(1);
  // Capacity 3: slots 2, prefetch 1.
  const { node, pool } = await startWorker(2, [a, b]);
  try {
    // A, welcomed first, was given all the capacity while alone, and uses it. The first
    // answer frees only prefetch room (held 2 = slots), which is not parked with several
    // balancers and no work waiting; the second frees a slot, parked with A (tie: first).
    a.request(0);
    a.request(0);
    a.request(0);
    await settle();
    pool.finish();
    await settle();
    assert.deepEqual([a.credit, b.credit, node.held], [0, 0, 2]);
    pool.finish();
    await settle();
    assert.deepEqual([a.credit, b.credit, node.held], [1, 0, 1]);
    // B has a job waiting: it gets the prefetch room.
    b.heartbeat(1);
    await settle();
    assert.deepEqual([a.credit, b.credit, node.held], [1, 1, 1]);
    a.take();
    b.take();

    // Equal credit, B reports the deeper queue: the slot A's job frees goes to B.
    a.heartbeat(2);
    b.heartbeat(5);
    await settle();
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), ["REPLY 3"]);
    assert.deepEqual(b.take(), ["READY 1"]);

    // Equal credit again, A deeper: the slot B's job frees goes to A.
    const b1 = b.request(0);
    await settle();
    a.heartbeat(5);
    b.heartbeat(2);
    await settle();
    assert.deepEqual([a.credit, b.credit], [1, 1]);
    pool.finish();
    await settle();
    assert.deepEqual(b.take(), [`REPLY ${b1}`]);
    assert.deepEqual(a.take(), ["READY 1"]);

    // A holds more credit (2) but has work waiting, B none: A gets the slot.
    const b2 = b.request(0);
    await settle();
    a.heartbeat(3);
    await settle();
    assert.deepEqual([a.credit, b.credit], [2, 0]);
    pool.finish();
    await settle();
    assert.deepEqual(b.take(), [`REPLY ${b2}`]);
    assert.deepEqual(a.take(), ["READY 1"]);
  } finally {
    node.close();
  }
});

Deno.test("worker holds at most slots + prefetch + (B - 1) jobs for B balancers, and reaches it", async () => {
  const bals = [new FakeBalancer(1), new FakeBalancer(1), new FakeBalancer(1)];
  const [a, b, c] = bals;
  // Capacity 2 (slots 1, prefetch 1); bound 2 + (3 - 1) = 4.
  const { node } = await startWorker(1, bals);
  try {
    assert.deepEqual(bals.map((x) => x.credit), [2, 0, 0]);
    // B, then C, have work waiting and no credit while the capacity is parked at A (idle
    // credit): one extra grant each, never past the bound.
    b.heartbeat(9);
    await settle();
    assert.deepEqual(bals.map((x) => x.credit), [2, 1, 0]);
    c.heartbeat(9);
    await settle();
    assert.deepEqual(bals.map((x) => x.credit), [2, 1, 1]);
    a.request(0);
    a.request(0);
    b.request(9);
    c.request(9);
    await settle();
    // Four held: waiting with no credit, nobody gets more.
    a.heartbeat(9);
    b.heartbeat(9);
    await settle();
    assert.deepEqual(bals.map((x) => x.credit), [0, 0, 0]);
    assert.equal(node.held, 4);
    assert.equal(node.peakHeld, 4);
  } finally {
    node.close();
  }
});

Deno.test("worker gives no extra credit when its capacity is taken by jobs, not parked as credit: their answers free it for the oldest work", async () => {
  const a = new FakeBalancer(1, 2);
  const b = new FakeBalancer(1, 2);
  // Capacity 2: slots 1, prefetch 1.
  const { node, pool } = await startWorker(1, [a, b]);
  try {
    // Waits far apart: the real time the test takes cannot reorder them.
    a.request(5, 3);
    a.request(5, 3);
    await settle();
    a.take();
    b.take();
    b.heartbeat(1, 500);
    await settle();
    assert.deepEqual([a.credit, b.credit, node.held], [0, 0, 2], "no extra grant");
    pool.finish();
    await settle();
    // The slot A's job freed goes to B, whose job has waited longest.
    assert.deepEqual(a.take(), ["REPLY 1"]);
    assert.deepEqual(b.take(), ["READY 1"]);
  } finally {
    node.close();
  }
});

Deno.test("worker credit bound holds over random requests, heartbeats, answers, drains and reconnects", async () => {
  for (let seed = 1; seed <= 12; seed++) {
    const rng: Rng = mulberry32(seed);
    const count = 1 + int(rng, 4);
    const slots = 1 + int(rng, 3);
    const prefetch = int(rng, 3);
    const bound = slots + prefetch + (count - 1);
    const bals = Array.from({ length: count }, () => new FakeBalancer(prefetch));
    const draining = new Set<FakeBalancer>();
    const { node, pool } = await startWorker(slots, bals);
    const trail: string[] = [];
    try {
      for (let step = 0; step < 120; step++) {
        const x = pick(rng, bals);
        const i = bals.indexOf(x);
        const roll = int(rng, 100);
        if (roll < 45) {
          if (x.credit > 0 && !draining.has(x)) {
            x.request(int(rng, 6));
            trail.push(`${i} request`);
          }
        } else if (roll < 60) {
          x.heartbeat(int(rng, 6));
          trail.push(`${i} heartbeat`);
        } else if (roll < 92) {
          if (pool.running.length > 0) {
            pool.finish(int(rng, pool.running.length));
            trail.push("finish");
          }
        } else if (roll < 96) {
          x.drain(60_000);
          draining.add(x);
          trail.push(`${i} drain`);
        } else {
          const sessions = x.sessions;
          x.hangUp();
          draining.delete(x);
          trail.push(`${i} reconnect`);
          await until(
            () => x.sessions > sessions && node.connected === count,
            `balancer ${i} to reconnect`,
          );
        }
        await settle();
        const what = `seed ${seed}, step ${step}: ${trail.slice(-6).join(", ")}`;
        assert.ok(node.held <= bound, `held ${node.held} > ${bound} (${what})`);
        // What the balancers may still send, plus what the worker holds.
        const live = bals.filter((y) => !draining.has(y)).reduce((n, y) => n + y.credit, 0);
        assert.ok(
          node.held + live <= bound,
          `held + credit ${node.held + live} > ${bound} (${what})`,
        );
      }
      assert.ok(node.peakHeld <= bound);
    } finally {
      node.close();
    }
    await settle();
  }
});

Deno.test("worker answers every job exactly once and gives back every slot, over random requests, CANCELs, timeouts, answers, drains and reconnects", async () => {
  for (let seed = 1; seed <= 16; seed++) {
    const rng: Rng = mulberry32(seed);
    const count = 1 + int(rng, 3);
    const slots = 1 + int(rng, 3);
    const prefetch = int(rng, 3);
    const bound = slots + prefetch + (count - 1);
    const bals = Array.from({ length: count }, () => new FakeBalancer(prefetch));
    const draining = new Set<FakeBalancer>();
    // Per balancer: the jobs sent in its current session, and how often each was answered.
    const sent = bals.map(() => new Set<number>());
    const answers = bals.map(() => new Map<number, number>());
    const { node, pool } = await startWorker(slots, bals, { prefetch });
    const trail: string[] = [];
    const observe = (what: string) => {
      bals.forEach((b, i) => {
        for (const line of b.take()) {
          const m = /^(?:REPLY|ERROR) (\d+)/.exec(line);
          if (m === null) continue;
          const id = Number(m[1]);
          assert.ok(
            sent[i].has(id),
            `balancer ${i} got an answer to ${id}, not of its session (${what})`,
          );
          const n = (answers[i].get(id) ?? 0) + 1;
          answers[i].set(id, n);
          assert.equal(n, 1, `balancer ${i}: job ${id} answered ${n} times (${what})`);
        }
      });
      // A slot still taken is a job still held: no job is answered before its slot is free.
      assert.ok(
        node.held >= pool.running.length,
        `held ${node.held} < slots taken ${pool.running.length} (${what})`,
      );
      const live = bals.filter((y) => !draining.has(y)).reduce((n, y) => n + y.credit, 0);
      assert.ok(
        node.held + live <= bound,
        `held + credit ${node.held + live} > ${bound} (${what})`,
      );
    };
    try {
      for (let step = 0; step < 150; step++) {
        const x = pick(rng, bals);
        const i = bals.indexOf(x);
        const roll = int(rng, 100);
        if (roll < 35) {
          if (x.credit > 0 && !draining.has(x)) {
            sent[i].add(x.request(int(rng, 6)));
            trail.push(`${i} request`);
          }
        } else if (roll < 45) {
          x.heartbeat(int(rng, 6));
          trail.push(`${i} heartbeat`);
        } else if (roll < 58) {
          if (sent[i].size > 0) {
            const id = pick(rng, [...sent[i]]);
            x.cancel(id);
            trail.push(`${i} cancel ${id}`);
          }
        } else if (roll < 70) {
          const open = pool.running.map((_, k) => k).filter((k) => !pool.answered(k));
          if (open.length > 0) {
            pool.timeOut(pick(rng, open));
            trail.push("timeout");
          }
        } else if (roll < 94) {
          if (pool.running.length > 0) {
            pool.finish(int(rng, pool.running.length));
            trail.push("finish");
          }
        } else if (roll < 97) {
          x.drain(60_000);
          draining.add(x);
          trail.push(`${i} drain`);
        } else {
          const sessions = x.sessions;
          observe(trail.slice(-6).join(", "));
          x.hangUp();
          draining.delete(x);
          // Its jobs' answers are dropped now: the balancer redelivered them.
          sent[i].clear();
          answers[i].clear();
          trail.push(`${i} reconnect`);
          await until(
            () => x.sessions > sessions && node.connected === count,
            `balancer ${i} to reconnect`,
          );
        }
        await settle();
        observe(`seed ${seed}, step ${step}: ${trail.slice(-6).join(", ")}`);
      }
      // Every handler ends: every job is answered, every slot is free, nothing is held.
      for (let round = 0; round < 100 && (pool.running.length > 0 || node.held > 0); round++) {
        while (pool.running.length > 0) pool.finish(0);
        await settle();
        observe(`seed ${seed}, the end`);
      }
      assert.equal(pool.running.length, 0);
      assert.equal(node.held, 0, `seed ${seed}: jobs still held at the end`);
      bals.forEach((_, i) => {
        for (const id of sent[i]) {
          assert.equal(answers[i].get(id), 1, `seed ${seed}: balancer ${i}, job ${id} answered`);
        }
      });
    } finally {
      node.close();
    }
    await settle();
  }
});

Deno.test("worker sends no READY to a balancer that sent DRAIN; its unused credit goes to the others", async () => {
  const a = new FakeBalancer(1);
  const b = new FakeBalancer(1);
  const { node, pool } = await startWorker(2, [a, b]);
  try {
    assert.deepEqual([a.credit, b.credit], [3, 0]);
    a.take();
    b.take();
    a.request(0);
    a.request(0);
    a.drain(10_000);
    await settle();
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), ["REPLY 1"]);
    assert.deepEqual(b.take(), ["READY 2"]);
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), ["REPLY 2"]);
    assert.deepEqual(b.take(), ["READY 1"]);
  } finally {
    node.close();
  }
});

Deno.test("worker drain tells every balancer DRAIN and grants nothing more while held jobs finish", async () => {
  const a = new FakeBalancer(1);
  const b = new FakeBalancer(1);
  const { node, pool } = await startWorker(1, [a, b]);
  a.take();
  b.take();
  a.request(0);
  a.request(0);
  await settle();
  assert.equal(node.held, 2);
  const drained = node.drain(0);
  // Both finish before the grace runs out (synchronously, before any timer).
  pool.finish();
  pool.finish();
  await drained;
  await settle();
  assert.deepEqual(a.take(), ["DRAIN 0", "REPLY 1", "REPLY 2"]);
  assert.deepEqual(b.take(), ["DRAIN 0"]);
  assert.equal(node.held, 0);
});

Deno.test("worker reconnect resets the link's credit; held jobs still count, their late answers are dropped", async () => {
  const a = new FakeBalancer(1);
  // Capacity 3: slots 2, prefetch 1.
  const { node, pool } = await startWorker(2, [a]);
  try {
    assert.deepEqual(a.take(), ["HELLO role 2", `REGISTER 2 ${SERVICE}`, "READY 3"]);
    a.request(0);
    await settle();
    a.hangUp();
    await until(() => a.sessions === 2 && node.connected === 1, "the worker to reconnect");
    await settle();
    // Not 0 (the old session's 2 unused credits carried over): 3 less the job still held.
    assert.deepEqual(a.take(), ["HELLO role 2", `REGISTER 2 ${SERVICE}`, "READY 2"]);
    assert.equal(a.credit, 2);
    // The old session's job ends: its answer is not sent on the new session, its slot is.
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), ["READY 1"]);
  } finally {
    node.close();
  }
});

Deno.test("worker: after a reload, a CANCEL reaches the job on the old pool, which is answered when its handler there lets go", async () => {
  const a = new FakeBalancer(0);
  const { node, pool } = await startWorker(1, [a], { prefetch: 0 });
  try {
    a.take();
    const first = a.request(0);
    await settle();
    const reloaded = node.replacePool(new FakePool(1));
    await settle();
    a.cancel(first);
    await settle();
    assert.deepEqual(pool.cancelled, [pool.running[0].job.id], "the old pool is told");
    assert.deepEqual(a.take().filter((l) => l.startsWith("ERROR")), []);
    pool.finish(0);
    await settle();
    assert.deepEqual(a.take().filter((l) => l.startsWith("ERROR")), [
      `ERROR ${first} ${ErrorCode.CANCELLED}`,
    ]);
    assert.equal(node.held, 0);
    await reloaded;
  } finally {
    node.close();
  }
});

Deno.test("worker drops the jobs a lost balancer left waiting in the worker (prefetched): they never run, their capacity is granted again", async () => {
  const a = new FakeBalancer(1);
  const { node, pool } = await startWorker(1, [a], { prefetch: 1 });
  try {
    a.take();
    a.request(0);
    a.request(0);
    await settle();
    assert.equal(pool.running.length, 1);
    assert.equal(node.held, 2);
    a.hangUp();
    await until(() => a.sessions === 2 && node.connected === 1, "the worker to reconnect");
    await settle();
    // The balancer redelivers both: the running one still holds its slot, the waiting one
    // is gone.
    assert.equal(node.held, 1);
    assert.equal(a.credit, 1);
    pool.finish(0);
    await settle();
    assert.equal(pool.running.length, 0, "the lost session's waiting job never ran");
    assert.equal(node.held, 0);
    assert.equal(a.credit, 2);
  } finally {
    node.close();
  }
});

Deno.test("worker: a CANCEL for a job running in its pool cancels it there; the job is answered, and its slot granted again, only when its handler lets the slot go", async () => {
  const a = new FakeBalancer(0);
  const { node, pool } = await startWorker(2, [a], { prefetch: 0 });
  try {
    assert.deepEqual(a.take(), ["HELLO role 2", `REGISTER 2 ${SERVICE}`, "READY 2"]);
    const first = a.request(0);
    const second = a.request(0);
    await settle();
    assert.equal(pool.running.length, 2);
    a.cancel(first);
    await settle();
    assert.deepEqual(pool.cancelled, [pool.running[0].job.id], "the pool is told which job");
    // Its handler runs on (a Lua handler runs to its end): its slot is still taken, so no
    // answer yet (the balancer keeps counting the job) and no credit for that slot.
    assert.deepEqual(a.take(), []);
    assert.equal(node.held, 2);
    // The other job ends: its slot, not the cancelled one's, is granted again.
    pool.finish(1);
    await settle();
    assert.deepEqual(a.take(), [`REPLY ${second}`, "READY 1"]);
    // The cancelled job's handler ends: now it is answered, and its slot granted.
    pool.finish(0);
    await settle();
    assert.deepEqual(a.take(), [`ERROR ${first} ${ErrorCode.CANCELLED}`, "READY 1"]);
    assert.equal(node.held, 0);
    a.cancel(first); // already answered: ignored
    await settle();
    assert.deepEqual(a.take(), []);
    assert.equal(pool.cancelled.length, 1);
  } finally {
    node.close();
  }
});

Deno.test("worker: a job answered timeout while its handler still runs is answered when its own slot is free, and holds back no other job's answer", async () => {
  const a = new FakeBalancer(0);
  const { node, pool } = await startWorker(2, [a], { prefetch: 0 });
  try {
    a.take();
    const first = a.request(0);
    const second = a.request(0);
    await settle();
    a.cancel(first);
    await settle();
    // The second job's deadline passes in the pool: its handler runs on, its slot is taken.
    pool.timeOut(1);
    await settle();
    assert.deepEqual(a.take(), [], "no answer, and no credit, while both slots are taken");
    assert.equal(node.held, 2);
    // The cancelled job's handler lets go: it is answered now, whatever the other does.
    pool.finish(0);
    await settle();
    assert.deepEqual(a.take(), [`ERROR ${first} ${ErrorCode.CANCELLED}`, "READY 1"]);
    pool.finish(0);
    await settle();
    assert.deepEqual(a.take(), [`ERROR ${second} ${ErrorCode.TIMEOUT}`, "READY 1"]);
    assert.equal(node.held, 0);
  } finally {
    node.close();
  }
});

Deno.test("worker: a CANCEL for a job waiting in the worker (prefetched) answers it at once; it never runs", async () => {
  const a = new FakeBalancer(1);
  const { node, pool } = await startWorker(1, [a], { prefetch: 1 });
  try {
    a.take();
    a.request(0);
    const waiting = a.request(0);
    await settle();
    assert.equal(pool.running.length, 1);
    a.cancel(waiting);
    await settle();
    assert.deepEqual(a.take(), [`ERROR ${waiting} ${ErrorCode.CANCELLED}`, "READY 1"]);
    assert.deepEqual(pool.cancelled, []);
    pool.finish();
    await settle();
    assert.equal(pool.running.length, 0, "the cancelled job never started");
  } finally {
    node.close();
  }
});

Deno.test("worker: its own balancer (listen and connect) and a remote one share one slot budget; no slot is promised twice", async () => {
  const { Balancer } = await import("../balancer/balancer.ts");
  const { LocalLink } = await import("./_local_link.ts");
  const a = new FakeBalancer(1);
  const { node, pool } = await startWorker(2, [a], { prefetch: 1 });
  const own = new Balancer({ sweepIntervalMs: 0, serviceGraceMs: 0, prefetchDepth: 0.5 });
  const link = new LocalLink(own, node, [SERVICE]);
  try {
    a.take();
    assert.equal(a.credit, 3, "all of slots + prefetch went to the only source at first");
    own.addProvider(link);
    node.attach(link);
    assert.equal(link.credit, 0, "nothing is left for the local balancer yet");
    const job = (i: number) => ({
      service: SERVICE,
      protocol: "ep" as const,
      method: "EP",
      path: "/" + SERVICE,
      query: "",
      headers: [],
      body: new Uint8Array([i]),
      deadlineMs: 0,
      priority: 0,
      remote: "test",
    });
    const answers: Promise<unknown>[] = [];
    for (let i = 0; i < 4; i++) answers.push(Promise.resolve(own.submit(job(i))));
    // The local jobs wait in the local queue: its demand makes the worker give it the
    // extra credit the policy allows one balancer with work waiting (B − 1 = 1 here).
    await settle();
    assert.equal(node.held, 1, "one local job taken with the one extra credit");
    assert.ok(node.held + a.credit + link.credit <= 2 + 1 + 1, "slots + prefetch + (B − 1)");
    // The remote balancer uses its credit too.
    a.request(0);
    a.request(0);
    await settle();
    assert.equal(pool.running.length, 2, "never more running than slots");
    assert.ok(node.held + a.credit + link.credit <= 4);
    // Freed slots go to where work waits (the local queue), one credit at a time.
    while (node.held > 0) {
      pool.finish();
      await settle();
      assert.ok(pool.running.length <= 2);
      assert.ok(node.held + a.credit + link.credit <= 4, "the bound holds after every answer");
    }
    await settle();
    while (pool.running.length > 0) {
      pool.finish();
      await settle();
    }
    const settled = await Promise.allSettled(answers);
    assert.equal(
      settled.filter((r) => r.status === "fulfilled").length,
      4,
      "every local job answered",
    );
    assert.equal(own.queueDepth(SERVICE), 0);
  } finally {
    own.close();
    node.close();
  }
});

// --- several balancers: the oldest waiting job first (EP version 2, SPEC.md §9.5) ----------

Deno.test("worker offers EP versions 1-2 (preface 2): a version-1 balancer is spoken version 1, a version-2 one version 2", async () => {
  const a = new FakeBalancer(1, 1);
  const b = new FakeBalancer(1, 2);
  const { node, pool } = await startWorker(2, [a, b]);
  try {
    for (const x of [a, b]) {
      assert.equal(x.preface, 2);
      assert.deepEqual([x.hello?.minVersion, x.hello?.maxVersion], [1, 2]);
    }
    // Each decodes the other's frames with the agreed version's layouts (a fake that read
    // a frame of the wrong layout fails the test): a v2 REQUEST with a wait, answered.
    a.take();
    b.take();
    const ja = a.request(3, 7);
    await settle();
    b.heartbeat(1, 9); // B, with work waiting, gets credit
    await settle();
    const jb = b.request(3, 7);
    await settle();
    pool.finish();
    pool.finish();
    await settle();
    assert.deepEqual(a.take().filter((l) => l.startsWith("REPLY")), [`REPLY ${ja}`]);
    assert.deepEqual(b.take().filter((l) => l.startsWith("REPLY")), [`REPLY ${jb}`]);
    assert.equal(node.connected, 2);
  } finally {
    node.close();
  }
});

Deno.test("worker gives a freed slot to the balancer whose oldest waiting job is oldest, not the one with the deeper queue", async () => {
  const a = new FakeBalancer(0, 2);
  const b = new FakeBalancer(0, 2);
  // One slot, no prefetch: every freed slot is one credit.
  const { node, pool } = await startWorker(1, [a, b]);
  try {
    assert.deepEqual([a.credit, b.credit], [1, 0]);
    a.take();
    b.take();
    // A's job runs; A reports 10 jobs waiting, the oldest for 5 ms; B one, for 400 ms.
    a.request(10, 5);
    await settle();
    b.heartbeat(1, 400);
    await settle();
    assert.deepEqual([a.credit, b.credit], [0, 0], "no extra: the capacity is a running job");
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), ["REPLY 1"]);
    assert.deepEqual(b.take(), ["READY 1"]);
    // Now B's job runs; A's oldest has waited 600 ms, B's next 2 ms: A gets the slot.
    b.request(30, 2);
    await settle();
    a.heartbeat(10, 600);
    await settle();
    pool.finish();
    await settle();
    assert.deepEqual(b.take(), ["REPLY 1"]);
    assert.deepEqual(a.take(), ["READY 1"]);
    assert.equal(node.held, 0);
  } finally {
    node.close();
  }
});

Deno.test("worker next to a balancer that reports no waits (EP v1) ranks every balancer by queue depth per credit", async () => {
  const a = new FakeBalancer(0, 1);
  const b = new FakeBalancer(0, 2);
  const { node, pool } = await startWorker(1, [a, b]);
  try {
    a.take();
    b.take();
    a.request(10);
    await settle();
    b.heartbeat(1, 900); // the older job, but A cannot say how old its are
    await settle();
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), ["REPLY 1", "READY 1"]);
    assert.deepEqual(b.take(), []);
    assert.equal(node.held, 0);
  } finally {
    node.close();
  }
});

Deno.test("worker with several balancers and no work waiting parks its free slots, not its prefetch; the prefetch goes to work waiting", async () => {
  const a = new FakeBalancer(2, 2);
  const b = new FakeBalancer(2, 2);
  // Capacity 3: one slot, prefetch 2. A, welcomed alone first, got all 3.
  const { node, pool } = await startWorker(1, [a, b]);
  try {
    assert.deepEqual([a.credit, b.credit], [3, 0]);
    a.request(0);
    a.request(0);
    a.request(0);
    await settle();
    pool.finish();
    await settle();
    pool.finish();
    await settle();
    assert.deepEqual([a.credit, b.credit, node.held], [0, 0, 1], "prefetch room is not parked");
    pool.finish();
    await settle();
    assert.deepEqual([a.credit, b.credit, node.held], [1, 0, 0], "the free slot is");
    // B has work waiting: it gets the prefetch room (one credit per uncovered job).
    b.heartbeat(2, 1);
    await settle();
    assert.deepEqual([a.credit, b.credit], [1, 2]);
  } finally {
    node.close();
  }
});

Deno.test("worker: a balancer with work waiting is not starved by idle credit parked with another whose last report is stale", async () => {
  const a = new FakeBalancer(0, 2);
  const b = new FakeBalancer(0, 2);
  // One slot, no prefetch. A reported work waiting and got the slot's credit; its jobs then
  // went elsewhere (it sends nothing): the credit is idle, but A's last report says 3.
  const { node } = await startWorker(1, [a, b]);
  try {
    a.heartbeat(3, 20);
    await settle();
    assert.deepEqual([a.credit, b.credit], [1, 0]);
    a.take();
    b.take();
    b.heartbeat(1, 5);
    await settle();
    // The capacity is parked as credit: B gets one extra grant (the B − 1 bound).
    assert.deepEqual([a.credit, b.credit], [1, 1]);
    assert.deepEqual(b.take(), ["READY 1"]);
    assert.equal(node.held, 0);
  } finally {
    node.close();
  }
});

Deno.test("worker with several balancers grants none beyond its slots to a balancer whose work is newer than the waiting work of one that holds its slot and credit: the light balancer's newer job does not start ahead of the heavy one's older job", async () => {
  // A (heavy) and B (light) as ep's balancer uses credit: at once while it holds fewer jobs
  // here than the worker's slots, beyond that only under its prefetch rule (queue not deep
  // enough here: it keeps the credit).
  const a = new FakeBalancer(2, 2);
  const b = new FakeBalancer(2, 2);
  // Capacity 3: one slot, prefetch 2. A, welcomed alone first, got all 3.
  const { node, pool } = await startWorker(1, [a, b]);
  try {
    assert.deepEqual([a.credit, b.credit], [3, 0]);
    a.take();
    b.take();
    // A's job a1 runs; one more of A's waits at A, for 10 ms; A keeps its credit (prefetch).
    const a1 = a.request(1, 10);
    await settle();
    // B's one job has waited 2 ms: B signals demand, and sends its job on any credit at once
    // (it holds no job here, so to B the worker has a free slot).
    b.heartbeat(1, 2);
    await settle();
    let b1 = b.credit > 0 ? b.request(0, 0) : 0;
    const granted = b.take();
    await settle();
    // a1 is answered; A, holding no job here now, uses its credit for its older job at once.
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), [`REPLY ${a1}`]);
    const a2 = a.request(0, 0);
    await settle();
    if (b1 === 0 && b.credit > 0) b1 = b.request(0, 0);
    await settle();
    // Which job started in the slot a1 freed: A's older one, not B's newer one.
    pool.finish();
    await settle();
    assert.deepEqual(a.take(), [`REPLY ${a2}`], "A's older job starts first");
    // No credit went to B while a1 ran: a job sent on it would have waited here.
    assert.deepEqual(granted, [], "no credit to the newer work while older work waits");
    // B got credit once a1 was answered (A held no job here; A's credit, used at once, and
    // B's race by a round trip each: here A's job came first).
    assert.ok(b1 > 0);
    pool.finish();
    await settle();
    assert.ok(b.take().includes(`REPLY ${b1}`));
    assert.equal(node.held, 0);
  } finally {
    node.close();
  }
});

Deno.test("worker registers the services balancers may hedge once version 2 is agreed (REGISTER hedge_ms: NA for the p95, else ms); none to a version-1 balancer", async () => {
  const a = new FakeBalancer(1, 1);
  const b = new FakeBalancer(1, 2);
  const hedge = new Map<string, number | null>([[SERVICE, null]]);
  const { node } = await startWorker(1, [a, b], { hedge });
  try {
    assert.deepEqual(a.take(), ["HELLO role 2", `REGISTER 1 ${SERVICE}`, "READY 2"]);
    const seen = b.take();
    assert.deepEqual(seen.slice(0, 3), [
      "HELLO role 2",
      `REGISTER 1 ${SERVICE}`,
      `REGISTER 1 ${SERVICE} hedge ${NOT_APPLICABLE}`,
    ]);
    assert.deepEqual(b.registered?.hedgeMs, [NOT_APPLICABLE]);
  } finally {
    node.close();
  }
  const c = new FakeBalancer(1, 2);
  const w2 = await startWorker(1, [c], { hedge: new Map([[SERVICE, 50]]) });
  try {
    assert.deepEqual(c.registered?.hedgeMs, [50]);
  } finally {
    w2.node.close();
  }
});

Deno.test("nextCredit: one source gets everything; several, the oldest uncovered work (estimated), then free slots parked with the least credit", () => {
  const v = (credit: number, queued: number, waitMs = NaN): CreditSource => ({
    credit,
    queued,
    waitMs,
  });
  // One source: up to the capacity, whatever it reports.
  assert.equal(nextCredit([v(0, 0)], 1, 3, 2), 0);
  assert.equal(nextCredit([v(3, 0)], 1, 3, 2), -1);
  assert.equal(nextCredit([v(0, 9)], 1, 3, 3), -1, "capacity used up");
  // Several: the oldest work.
  assert.equal(nextCredit([v(0, 9, 10), v(0, 1, 30)], 1, 3, 1), 1);
  assert.equal(nextCredit([v(0, 9, 40), v(0, 1, 30)], 1, 3, 1), 0);
  // Its next uncovered job: 40 ms × (1 − 2/4) = 20 < 30.
  assert.equal(nextCredit([v(2, 4, 40), v(0, 1, 30)], 1, 5, 3), 1);
  // Covered work (credit ≥ queued) does not count.
  assert.equal(nextCredit([v(2, 2, 90), v(0, 1, 30)], 1, 5, 3), 1);
  // Equal ages: the most uncovered jobs.
  assert.equal(nextCredit([v(0, 2, 10), v(0, 5, 10)], 1, 3, 1), 1);
  // A source that reports no waits: all by queue depth per credit.
  assert.equal(nextCredit([v(0, 9), v(0, 1, 300)], 1, 3, 1), 0);
  assert.equal(nextCredit([v(1, 9), v(0, 6, 300)], 1, 5, 1), 1, "9/2 < 6/1");
  // No work uncovered: a free slot goes to the least credit (first on a tie); no prefetch.
  assert.equal(nextCredit([v(1, 0), v(0, 0)], 2, 4, 1), 1);
  assert.equal(nextCredit([v(0, 0), v(0, 0)], 2, 4, 1), 0);
  assert.equal(nextCredit([v(1, 0), v(0, 0)], 2, 4, 2), -1, "used ≥ slots: prefetch room");
  assert.equal(nextCredit([v(1, 1, 5), v(0, 0)], 1, 4, 1), -1, "covered work is none");
});

Deno.test("nextCredit: beyond the free slots, none to a source whose next job is newer than waiting work another keeps credit for while it holds the worker's slots", () => {
  const v = (credit: number, queued: number, waitMs: number, held: number): CreditSource => ({
    credit,
    queued,
    waitMs,
    held,
  });
  // One slot, capacity 5. A holds the slot's job and 2 credit, 2 jobs waiting (oldest 10 ms);
  // B 1 job of 2 ms: used 3 ≥ slots, a job on B's credit would wait here ahead of A's.
  assert.equal(nextCredit([v(2, 2, 10, 1), v(0, 1, 2, 0)], 1, 5, 3), -1);
  // A's uncovered work is older still: A gets it (ranked as before).
  assert.equal(nextCredit([v(1, 2, 10, 1), v(0, 1, 2, 0)], 1, 5, 2), 0);
  // B's job is the older one: B gets it.
  assert.equal(nextCredit([v(1, 2, 10, 1), v(0, 1, 30, 0)], 1, 5, 2), 1);
  // A holds no job here: its credit would be used at once if its report were fresh (it is
  // idle or stale), so it holds nothing back: B gets it.
  assert.equal(nextCredit([v(2, 2, 10, 0), v(0, 1, 2, 0)], 1, 5, 2), 1);
  // A has nothing waiting: its credit waits on nothing.
  assert.equal(nextCredit([v(2, 0, NaN, 1), v(0, 1, 2, 0)], 1, 5, 3), 1);
  // Within the free slots (4 slots, used 3) B's job starts at once: none waits behind it.
  assert.equal(nextCredit([v(2, 2, 10, 1), v(0, 1, 2, 0)], 4, 6, 3), 1);
  // A source reporting no waits (version 1): depths decide, as before.
  assert.equal(nextCredit([v(2, 2, NaN, 1), v(0, 1, 2, 0)], 1, 5, 3), 1);
  assert.equal(olderWorkHeld([v(2, 2, 10, 1), v(0, 1, 2, 0)], 1, 1, 2), true);
  assert.equal(olderWorkHeld([v(2, 2, 10, 1), v(0, 1, 2, 0)], 0, 1, 10), false, "not itself");
});

Deno.test("nextCredit over random sources: within the capacity, no grant beyond the free slots ahead of older work held back, and never none while work is uncovered and nothing is held back", () => {
  for (let seed = 1; seed <= 2_000; seed++) {
    const rng: Rng = mulberry32(seed);
    const slots = 1 + int(rng, 4);
    const cap = slots + int(rng, 5);
    const n = 2 + int(rng, 3);
    const sources: CreditSource[] = Array.from({ length: n }, () => {
      const queued = int(rng, 6);
      return {
        credit: int(rng, 4),
        queued,
        waitMs: queued > 0 ? int(rng, 50) : NaN,
        held: int(rng, slots + 2),
      };
    });
    const used = sources.reduce((t, x) => t + x.credit + (x.held ?? 0), 0);
    const what = `seed ${seed}: ${JSON.stringify({ slots, cap, used, sources })}`;
    const i = nextCredit(sources, slots, cap, used);
    if (used >= cap) {
      assert.equal(i, -1, what);
      continue;
    }
    if (i >= 0 && used >= slots) {
      const x = sources[i];
      const next = x.queued > 0 ? x.waitMs * (1 - x.credit / x.queued) : 0;
      assert.ok(!olderWorkHeld(sources, i, slots, next), what);
    }
    const uncovered = sources.some((x) => x.queued > x.credit && x.credit < cap);
    const heldBack = sources.some((x) => x.credit > 0 && x.queued > 0 && (x.held ?? 0) >= slots);
    if (uncovered && !heldBack) assert.ok(i >= 0, what);
  }
});

Deno.test("worker registers its new slot count when its pool grows, and grants the new capacity", async () => {
  const a = new FakeBalancer(2);
  const { node, pool } = await startWorker(2, [a]);
  try {
    assert.deepEqual(a.take(), ["HELLO role 2", `REGISTER 2 ${SERVICE}`, "READY 4"]);
    assert.equal(node.scaleUp("busy"), true);
    await settle();
    assert.deepEqual(a.take(), [], "nothing until the thread is ready");
    pool.ready();
    await settle();
    assert.deepEqual(a.take(), [`REGISTER 3 ${SERVICE}`, "READY 1"]);
    assert.deepEqual([node.slots, a.credit], [3, 5]);
  } finally {
    node.close();
  }
});

Deno.test("worker retires a thread only once held jobs and granted credit fit the smaller capacity, granting nothing beyond it meanwhile", async () => {
  const a = new FakeBalancer(2);
  const { node, pool } = await startWorker(2, [a]);
  try {
    a.take();
    // Idle: all 4 credits (2 slots + 2 prefetch) are with the balancer, which may use them.
    assert.equal(node.scaleDown("idle"), false, "4 promised > 3 after the retirement");
    assert.deepEqual([node.withheld, pool.scaled.length], [1, 0]);
    const first = a.request(0);
    await settle();
    pool.finish();
    await settle();
    // The answer frees a slot, which is not granted again: 0 held + 3 credit fits 1 + 2.
    assert.deepEqual(a.take(), [`REPLY ${first}`, `REGISTER 1 ${SERVICE}`]);
    assert.deepEqual([node.slots, node.withheld, a.credit, pool.scaled], [1, 0, 3, [
      "retire idle",
    ]]);
    // The balancer uses all it holds: 3 jobs, within 1 slot + 2 prefetch.
    a.request(0);
    a.request(0);
    a.request(0);
    await settle();
    assert.equal(node.held, 3);
    assert.equal(node.scaleDown("idle"), false, "one thread left");
  } finally {
    node.close();
  }
});

Deno.test("worker: growing while a retirement waits calls it off and grants what was held back", async () => {
  const a = new FakeBalancer(1);
  const { node, pool } = await startWorker(2, [a]);
  try {
    a.take();
    const id = a.request(0);
    await settle();
    assert.equal(node.scaleDown("idle"), false);
    pool.finish();
    await settle();
    // 0 held + 2 credit fits 1 + 1: retired at once.
    assert.deepEqual(a.take(), [`REPLY ${id}`, `REGISTER 1 ${SERVICE}`]);
    a.request(0);
    a.request(0);
    await settle();
    assert.equal(node.scaleUp("busy"), true);
    pool.ready();
    await settle();
    assert.deepEqual(a.take(), [`REGISTER 2 ${SERVICE}`, "READY 1"]);
    node.cancelScaleDown();
    assert.equal(node.scaleDown("again"), false, "2 held + 1 credit > 1 + 1");
    assert.equal(node.withheld, 1);
    assert.equal(node.scaleUp("busy again"), true);
    assert.equal(node.withheld, 0);
    await settle();
    assert.deepEqual(a.take(), [], "nothing was held back from the balancer's credit");
  } finally {
    node.close();
  }
});

Deno.test("worker credit bound holds for the slots registered at each moment while its pool grows and shrinks at random", async () => {
  for (let seed = 1; seed <= 10; seed++) {
    const rng: Rng = mulberry32(100 + seed);
    const count = 1 + int(rng, 3);
    const prefetch = int(rng, 3);
    const bals = Array.from({ length: count }, () => new FakeBalancer(prefetch));
    const { node, pool } = await startWorker(1 + int(rng, 3), bals);
    const trail: string[] = [];
    try {
      for (let step = 0; step < 150; step++) {
        const x = pick(rng, bals);
        const roll = int(rng, 100);
        if (roll < 40) {
          if (x.credit > 0) {
            x.request(int(rng, 6));
            trail.push("request");
          }
        } else if (roll < 50) {
          x.heartbeat(int(rng, 6));
          trail.push("heartbeat");
        } else if (roll < 75) {
          if (pool.running.length > 0) {
            pool.finish(int(rng, pool.running.length));
            trail.push("finish");
          }
        } else if (roll < 83) {
          node.scaleUp("up");
          trail.push("up");
        } else if (roll < 90) {
          if (pool.threadsStarting > 0) {
            pool.ready();
            trail.push("ready");
          }
        } else if (roll < 98) {
          node.scaleDown("down");
          trail.push("down");
        } else {
          node.cancelScaleDown();
          trail.push("cancel");
        }
        await settle();
        const bound = node.slots + prefetch + (count - 1);
        const what = `seed ${seed}, step ${step}: ${trail.slice(-6).join(", ")}`;
        const promised = node.held + bals.reduce((n, y) => n + y.credit, 0);
        assert.ok(promised <= bound, `held + credit ${promised} > ${bound} (${what})`);
        assert.equal(node.slots, pool.concurrency, `registered slots follow the pool (${what})`);
      }
      // Everything held still gets answered.
      while (pool.running.length > 0 || node.held > 0) {
        if (pool.running.length > 0) pool.finish();
        await settle();
      }
    } finally {
      node.close();
    }
    await settle();
  }
});
