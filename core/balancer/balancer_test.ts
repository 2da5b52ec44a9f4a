/**
 * The dispatch rules, pinned exactly: a fake provider (records what it is handed, grants
 * credit, answers, refuses or loses jobs when told) and a fake clock, with the sweep run by
 * the test. No sockets, no threads, no timers, no sleeps: every count and order is exact.
 *
 * `tests/balancer_test.ts` checks the wiring of the same rules end to end (real sockets,
 * workers and handler threads).
 */
import assert from "node:assert/strict";
import { Balancer, type BalancerOptions, type FailedJob, type Outcome } from "./balancer.ts";
import type { Provider, QueuedJob } from "./provider.ts";
import { type Job, JobError, type JobResult } from "../job.ts";
import { UnknownServiceError, UnknownWorkerError } from "../errors.ts";
import { jobRingBytes } from "../ep_limits.ts";
import { WorkerLink } from "./worker_link.ts";
import type { Frame } from "../../protocol/ep_frames.ts";
import { ErrorCode } from "../../protocol/errors.ts";

/** A fake provider's slots, credit (default: its slots) and whether it can be cut off. */
interface ProviderOptions {
  slots?: number;
  credit?: number;
  evictable?: boolean;
  /** Services it lets the balancer hedge (a worker's REGISTER, version 2). */
  hedge?: ReadonlyMap<string, number | null>;
}

/** A provider driven by the test. It fails the test if handed a job beyond its credit. */
class FakeProvider implements Provider {
  readonly name: string;
  services: ReadonlySet<string>;
  slots: number;
  credit: number;
  draining = false;
  drainDeadline: number | undefined = undefined;
  maxJobBytes: number | undefined = undefined;
  /** Names of the jobs handed to it, in order (refused ones are not). */
  readonly log: string[] = [];
  /** Jobs it holds (handed and not answered by it), in the order it got them. */
  readonly holding: QueuedJob[] = [];
  /** Names of the jobs the balancer told it to cancel, in order. */
  readonly cancels: string[] = [];
  /** `service:depth` of every demand the balancer told it, in order. */
  readonly demands: string[] = [];
  /** Reasons it was cut off for, when it can be (`evict` set). */
  readonly evictions: string[] = [];
  /** Thrown by the next dispatch, which then takes nothing. */
  refuseNext: unknown = null;
  /** Jobs whose dispatch it refused. */
  readonly refused: QueuedJob[] = [];
  evict?: (reason: string) => void;
  hedge?: ReadonlyMap<string, number | null>;
  /** The free slots it last reported (all its balancers counted); undefined: not reported. */
  reportedFree: number | undefined = undefined;
  #rig: Rig;

  constructor(
    rig: Rig,
    name: string,
    services: string[],
    opts: ProviderOptions = {},
  ) {
    const { slots = 1, credit = slots, evictable = false, hedge } = opts;
    this.#rig = rig;
    this.hedge = hedge;
    this.name = name;
    this.services = new Set(services);
    this.slots = slots;
    this.credit = credit;
    if (evictable) this.evict = (reason) => void this.evictions.push(reason);
  }

  dispatch(qj: QueuedJob): void {
    if (this.refuseNext !== null) {
      const err = this.refuseNext;
      this.refuseNext = null;
      this.refused.push(qj);
      throw err;
    }
    if (this.credit <= 0) this.#rig.violations.push(`${this.name}: dispatch beyond credit`);
    this.credit--;
    this.log.push(this.#rig.nameOf(qj));
    this.holding.push(qj);
  }

  cancel(qj: QueuedJob): void {
    this.cancels.push(this.#rig.nameOf(qj));
  }

  demand(service: string, depth: number): void {
    this.demands.push(`${service}:${depth}`);
  }

  /** Grants `n` more credit (a READY) and asks for work. */
  grant(n = 1): void {
    this.credit += n;
    this.#rig.balancer.pull(this);
  }

  /** Answers the job it holds named `name` (its oldest by default); the slot's credit returns. */
  answer(name?: string, result: JobResult | JobError = { body: "done" }): void {
    const i = name === undefined
      ? 0
      : this.holding.findIndex((qj) => this.#rig.nameOf(qj) === name);
    assert.ok(i >= 0 && i < this.holding.length, `${this.name} holds no job ${name}`);
    const [qj] = this.holding.splice(i, 1);
    this.credit++;
    this.#rig.balancer.finish(this, qj, result);
  }

  /** Its connection is gone. */
  lose(): void {
    this.#rig.balancer.removeProvider(this, "lost in the test");
  }
}

/**
 * Where the fake clock starts. Not 0: a {@linkcode QueuedJob}'s `dispatched` is 0 for "not
 * dispatched", as `performance.now()` never is once a balancer runs.
 */
const START = 1000;

/** A balancer on a fake clock and the jobs submitted to it; `t` is ms since it started. */
class Rig {
  t = 0;
  readonly balancer: Balancer;
  /** `name:outcome` of each job, in the order they were answered. */
  readonly answers: string[] = [];
  /** The errors jobs were answered with, by name. */
  readonly errors = new Map<string, JobError>();
  /** What the observer was told: `[service, outcome, queueWaitMs, serviceMs, provider]`. */
  readonly observed: [string, Outcome, number, number, string | null][] = [];
  /** Rule breaks the fake providers saw. */
  readonly violations: string[] = [];
  readonly #names = new WeakMap<Job, string>();

  constructor(options: BalancerOptions = {}) {
    this.balancer = new Balancer({
      serviceGraceMs: 0,
      ...options,
      now: () => START + this.t,
      sweepIntervalMs: 0,
      observer: {
        job: (s, o, w, r, p) => void this.observed.push([s, o, w, r, p]),
        failed: options.observer?.failed,
      },
    });
  }

  provider(name: string, services: string[] = ["svc"], opts: ProviderOptions = {}): FakeProvider {
    const p = new FakeProvider(this, name, services, opts);
    this.balancer.addProvider(p);
    return p;
  }

  nameOf(qj: QueuedJob): string {
    return this.#names.get(qj.job) ?? "?";
  }

  /** Submits job `name` for `service`; its answer is recorded in {@linkcode Rig.answers}. */
  submit(name: string, service = "svc", over: Partial<Job> = {}): Job {
    const job: Job = {
      service,
      protocol: "ep",
      method: "EP",
      path: "/" + service,
      query: "",
      headers: [],
      body: new Uint8Array(0),
      deadlineMs: 0,
      priority: 0,
      remote: "test",
      ...over,
    };
    this.#names.set(job, name);
    const failed = (e: unknown) => {
      assert.ok(e instanceof JobError, `${name}: ${e}`);
      this.errors.set(name, e);
      this.answers.push(`${name}:${e.kind}`);
    };
    let res: JobResult | Promise<JobResult>;
    try {
      res = this.balancer.submit(job);
    } catch (e) {
      failed(e);
      return job;
    }
    Promise.resolve(res).then(() => void this.answers.push(`${name}:ok`), failed);
    return job;
  }

  /** Lets the answers given so far reach {@linkcode Rig.answers}. */
  async settled(): Promise<string[]> {
    for (let i = 0; i < 3; i++) await Promise.resolve();
    return this.answers;
  }

  /** The balancer clock's reading at `t` (for absolute times such as `drainDeadline`). */
  at(t: number): number {
    return START + t;
  }

  /** Moves the clock to `t` and runs one sweep. */
  sweepAt(t: number): void {
    this.t = t;
    this.balancer.sweep();
  }

  counters(service = "svc") {
    const s = this.balancer.stats().services.find((x) => x.name === service);
    assert.ok(s, `no service ${service}`);
    return s.counters;
  }

  close(): void {
    this.balancer.close();
    assert.deepEqual(this.violations, []);
  }
}

const origin = () => ({ abandoned: false });

// --- the clock and the sweep ------------------------------------------------------------

/** Replaces setTimeout/clearTimeout while `fn` runs; returns the delays armed. */
async function timersArmed(
  fn: (started: number[], cleared: () => number) => void | Promise<void>,
): Promise<void> {
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  const started: number[] = [];
  let cleared = 0;
  globalThis.setTimeout = ((fn: () => void, ms: number) => {
    started.push(ms);
    return realSet(fn, ms);
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id: number) => {
    cleared++;
    realClear(id);
  }) as typeof clearTimeout;
  try {
    await fn(started, () => cleared);
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
}

/** An origin that tells of its abandonment (`JobOrigin.watch`), as the connections' do. */
class TellingOrigin {
  abandoned = false;
  listeners: (() => void)[] = [];
  watch(listener: () => void): void {
    this.listeners.push(listener);
  }
  abandon(): void {
    this.abandoned = true;
    for (const l of this.listeners) l();
  }
}

function clockProvider(held: QueuedJob[], credit: number): Provider {
  return {
    name: "p",
    services: new Set(["svc"]),
    slots: 1,
    credit,
    draining: false,
    dispatch(qj) {
      (this as { credit: number }).credit--;
      held.push(qj);
    },
    cancel() {},
  };
}

function clockJob(deadlineMs = 0, origin?: Job["origin"]): Job {
  return {
    service: "svc",
    protocol: "ep",
    method: "EP",
    path: "/svc",
    query: "",
    headers: [],
    body: new Uint8Array(0),
    deadlineMs,
    priority: 0,
    remote: "test",
    origin,
  };
}

Deno.test("balancer clock: no timer while idle; jobs whose origin tells of its abandonment (or without one) arm the sweep only for what falls due: a deadline, a service's grace; never by itself with sweepIntervalMs 0", async () => {
  await timersArmed(async (started, cleared) => {
    const held: QueuedJob[] = [];
    const t = 1000;
    const manual = new Balancer({ sweepIntervalMs: 0, now: () => t });
    manual.addProvider(clockProvider(held, 0));
    Promise.resolve(manual.submit(clockJob())).catch(() => {}); // queued
    assert.deepEqual(started, [], "sweepIntervalMs 0 starts no timer");
    manual.close();

    const auto = new Balancer({ now: () => t, serviceGraceMs: 2000 });
    assert.deepEqual(started, [], "an idle balancer holds no timer");
    auto.addProvider(clockProvider(held, 1));
    const running = auto.submit(clockJob(5000, new TellingOrigin())) as Promise<JobResult>;
    assert.deepEqual(started, [5000], "a held job: a sweep at its deadline, no 100 ms poll");
    Promise.resolve(auto.submit(clockJob(0, new TellingOrigin()))).catch(() => {}); // queued
    Promise.resolve(auto.submit(clockJob(3000))).catch(() => {}); // queued, no origin
    assert.deepEqual(started, [5000, 3000], "queued jobs: their deadline, no 10 ms poll");
    // A service with no provider left: its queued jobs are due at their grace (2000 ms).
    auto.removeProvider(held[0].provider!, "gone");
    assert.deepEqual(started.slice(0, 3), [5000, 3000, 10], "a sweep soon finds the grace");
    const clearedBefore = cleared();
    auto.close();
    assert.equal(cleared(), clearedBefore + 1, "close clears the armed sweep");
    await running.catch(() => {});
  });
});

Deno.test("balancer clock: an origin that cannot tell of its abandonment keeps the sweep every 10 ms while its job is queued, every 100 ms while held", async () => {
  await timersArmed((started) => {
    const held: QueuedJob[] = [];
    const t = 1000;
    const auto = new Balancer({ now: () => t });
    auto.addProvider(clockProvider(held, 1));
    const running = auto.submit(clockJob(5000, origin())) as Promise<JobResult>;
    assert.deepEqual(started, [100], "held: a sweep in 100 ms");
    Promise.resolve(auto.submit(clockJob(0, origin()))).catch(() => {}); // queued: sooner
    assert.deepEqual(started, [100, 10]);
    Promise.resolve(auto.submit(clockJob(0, origin()))).catch(() => {});
    assert.deepEqual(started, [100, 10], "armed as early already: nothing more");
    auto.close();
    auto.finish(held[0].provider!, held[0], { body: "x" });
    return running.then(() => {});
  });
});

Deno.test("balancer clock: an origin's abandonment notice arms a sweep within sweepIntervalMs, which drops its queued job and cancels its held one onward", async () => {
  const held: QueuedJob[] = [];
  const cancels: QueuedJob[] = [];
  const b = new Balancer({ sweepIntervalMs: 5 });
  const p = clockProvider(held, 1);
  p.cancel = (qj) => cancels.push(qj);
  b.addProvider(p);
  const o1 = new TellingOrigin();
  const o2 = new TellingOrigin();
  const running = Promise.resolve(b.submit(clockJob(60_000, o1))).catch((e) => e);
  const queued = Promise.resolve(b.submit(clockJob(60_000, o2))).catch((e) => e);
  assert.equal(o1.listeners.length, 1, "the balancer watches the origin of each job");
  o2.abandon();
  const err = await queued;
  assert.ok(err instanceof JobError && err.code === ErrorCode.CANCELLED, String(err));
  o1.abandon();
  const deadline = Date.now() + 5000;
  while (cancels.length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.deepEqual(cancels, [held[0]], "the held job is cancelled onward");
  b.finish(p, held[0], new JobError(ErrorCode.CANCELLED, "Cancelled"));
  assert.ok((await running) instanceof JobError);
  b.close();
});

Deno.test("balancer clock: uptime reads the given clock; a bad sweep interval is refused", () => {
  let t = 1000;
  const b = new Balancer({ now: () => t, sweepIntervalMs: 0 });
  assert.equal(b.uptimeMs, 0);
  t += 1234.5;
  assert.equal(b.uptimeMs, 1234.5);
  assert.throws(() => new Balancer({ sweepIntervalMs: -1 }), RangeError);
  assert.throws(() => new Balancer({ sweepIntervalMs: NaN }), RangeError);
  b.close();
});

// --- the fast path and credit -------------------------------------------------------------

Deno.test("balancer: a job that finds a free slot is dispatched at once, inside submit", async () => {
  const r = new Rig();
  const p = r.provider("p", ["svc"], { slots: 2 });
  r.submit("j1");
  assert.deepEqual(p.log, ["j1"]);
  r.submit("j2");
  assert.deepEqual(p.log, ["j1", "j2"]);
  assert.deepEqual(p.demands, [], "nobody is told about a job that did not wait");
  r.submit("j3");
  assert.deepEqual(p.log, ["j1", "j2"]);
  assert.equal(r.balancer.queueDepth("svc"), 1);
  assert.deepEqual(p.demands, ["svc:1"]);
  assert.equal(p.holding[0].attempt, 1);
  assert.equal(p.holding[0].provider, p);
  p.answer("j1");
  assert.deepEqual(p.log, ["j1", "j2", "j3"]);
  assert.deepEqual(await r.settled(), ["j1:ok"]);
  r.close();
});

Deno.test("balancer: the fast path picks the provider with the most free slots, the first attached on a tie", () => {
  const r = new Rig();
  const p1 = r.provider("p1", ["svc"], { slots: 1 });
  const p2 = r.provider("p2", ["svc"], { slots: 3 });
  for (const name of ["j1", "j2", "j3", "j4", "j5"]) r.submit(name);
  // Free slots p1/p2: 1/3 -> p2, 1/2 -> p2, 1/1 -> p1 (tie), 0/1 -> p2, 0/0 -> queued.
  assert.deepEqual(p1.log, ["j3"]);
  assert.deepEqual(p2.log, ["j1", "j2", "j4"]);
  assert.equal(r.balancer.queueDepth("svc"), 1);
  r.close();
});

Deno.test("balancer: never beyond credit: free slots without credit get nothing until a grant", () => {
  const r = new Rig();
  const p = r.provider("p", ["svc"], { slots: 4, credit: 0 });
  r.submit("j1");
  r.submit("j2");
  r.submit("j3");
  assert.deepEqual(p.log, []);
  assert.deepEqual(p.demands, ["svc:1", "svc:2", "svc:3"], "told the depth at every arrival");
  p.grant(2);
  assert.deepEqual(p.log, ["j1", "j2"], "two granted, two handed, oldest first");
  assert.equal(p.credit, 0);
  p.grant(5);
  assert.deepEqual(p.log, ["j1", "j2", "j3"]);
  assert.equal(p.credit, 4);
  assert.equal(r.balancer.heldBy(p), 3);
  r.close();
});

Deno.test("balancer: a provider with no credit is told the queue depth; one with credit, or a dispatched job, tells nobody", () => {
  const r = new Rig();
  const a = r.provider("a", ["svc"], { slots: 1 });
  const b = r.provider("b", ["svc"], { slots: 1, credit: 0 });
  r.submit("j1"); // to a, at once
  assert.deepEqual([a.demands, b.demands], [[], []]);
  r.submit("j2");
  r.submit("j3");
  assert.deepEqual(a.demands, ["svc:1", "svc:2"]);
  assert.deepEqual(b.demands, ["svc:1", "svc:2"]);
  b.grant(1); // takes j2
  r.submit("j4");
  assert.deepEqual(a.demands, ["svc:1", "svc:2", "svc:2"]);
  assert.deepEqual(b.demands, ["svc:1", "svc:2", "svc:2"]);
  assert.deepEqual([a.log, b.log], [["j1"], ["j2"]]);
  r.close();
});

// --- order ---------------------------------------------------------------------------------

Deno.test("balancer: higher priority jobs leave the queue first, FIFO within a priority", () => {
  const r = new Rig();
  const p = r.provider("p");
  r.submit("blocker");
  const jobs = [["low-1", 0], ["low-2", 0], ["high-1", 9], ["mid-1", 5], ["high-2", 9]] as const;
  for (const [name, priority] of jobs) r.submit(name, "svc", { priority });
  for (let i = 0; i < jobs.length; i++) p.answer();
  assert.deepEqual(p.log, ["blocker", "high-1", "high-2", "mid-1", "low-1", "low-2"]);
  r.close();
});

Deno.test("balancer: a freed slot takes the oldest waiting job among the provider's services, higher priority first", () => {
  const r = new Rig();
  const p = r.provider("p", ["a", "b"]);
  const other = r.provider("other", ["b"], { credit: 0 });
  r.submit("blocker", "a");
  r.submit("a1", "a");
  r.submit("b1", "b");
  r.submit("a2", "a");
  r.submit("b2", "b", { priority: 3 });
  r.submit("a3", "a", { priority: 3 });
  for (let i = 0; i < 5; i++) p.answer();
  assert.deepEqual(p.log, ["blocker", "b2", "a3", "a1", "b1", "a2"]);
  assert.deepEqual(other.log, []);
  r.close();
});

// --- prefetch ------------------------------------------------------------------------------

Deno.test("balancer prefetch: extra credit is used only when the queue holds prefetchDepth jobs per provider", () => {
  // One provider, one slot, two jobs of prefetch credit, no turnaround known yet.
  const one = new Rig({ prefetchDepth: 2 });
  const p = one.provider("p", ["svc"], { slots: 1, credit: 3 });
  one.submit("j1"); // the free slot
  one.submit("j2"); // queue 1 < 2: waits
  assert.deepEqual(p.log, ["j1"]);
  one.submit("j3"); // queue 2 >= 2 x 1: the oldest is prefetched
  assert.deepEqual(p.log, ["j1", "j2"]);
  one.submit("j4"); // a second prefetched job needs a turnaround within the budget
  assert.deepEqual(p.log, ["j1", "j2"]);
  assert.equal(one.balancer.queueDepth("svc"), 2);
  one.close();

  // Two providers: 2 x 2 jobs must wait before either takes extra credit.
  const two = new Rig({ prefetchDepth: 2 });
  const a = two.provider("a", ["svc"], { slots: 1, credit: 2 });
  const b = two.provider("b", ["svc"], { slots: 1, credit: 2 });
  for (const name of ["j1", "j2", "j3", "j4", "j5"]) two.submit(name);
  assert.deepEqual([a.log, b.log], [["j1"], ["j2"]], "queue 3 < 4");
  two.submit("j6");
  assert.deepEqual([a.log, b.log], [["j1", "j3"], ["j2"]], "queue 4: one prefetched");
  two.close();

  // The default, 0.5: with four providers, two jobs waiting are enough.
  const four = new Rig();
  const ps = ["a", "b", "c", "d"].map((n) => four.provider(n, ["svc"], { slots: 1, credit: 2 }));
  for (const name of ["j1", "j2", "j3", "j4", "j5"]) four.submit(name);
  assert.deepEqual(ps.map((x) => x.log.length), [1, 1, 1, 1], "queue 1 < 2: waits");
  four.submit("j6");
  assert.deepEqual(ps.map((x) => x.log.length), [2, 1, 1, 1], "queue 2: one prefetched");
  four.close();

  // prefetchDepth 1: the first waiting job is prefetched.
  const eager = new Rig({ prefetchDepth: 1 });
  const e = eager.provider("e", ["svc"], { slots: 1, credit: 2 });
  eager.submit("j1");
  eager.submit("j2");
  assert.deepEqual(e.log, ["j1", "j2"]);
  eager.close();
});

/** A rig whose one provider (1 slot, 4 prefetch) has learned a turnaround of `ms`. */
function warmed(ms: number, options: BalancerOptions = {}): { r: Rig; p: FakeProvider } {
  const r = new Rig(options);
  const p = r.provider("p", ["svc"], { slots: 1, credit: 5 });
  r.submit("warm-up");
  r.t = ms;
  p.answer("warm-up");
  assert.equal(r.balancer.stats().services[0].turnaroundMs, ms);
  return { r, p };
}

Deno.test("balancer prefetch: beyond one prefetched job only while waiting x turnaround <= budget", () => {
  // Turnaround 1 ms, budget 3 ms: 1, 2 and 3 jobs may wait in the provider, not 4.
  const short = warmed(1);
  for (let i = 1; i <= 7; i++) short.r.submit(`j${i}`);
  assert.deepEqual(short.p.log.slice(1), ["j1", "j2", "j3", "j4"]);
  assert.equal(short.r.balancer.queueDepth("svc"), 3);
  assert.equal(short.p.credit, 1, "credit left unused");
  short.r.close();

  // Turnaround 2 ms: two waiting would be 4 ms, over the budget: one prefetched job only.
  const long = warmed(2);
  for (let i = 1; i <= 7; i++) long.r.submit(`j${i}`);
  assert.deepEqual(long.p.log.slice(1), ["j1", "j2"]);
  long.r.close();

  // A larger budget takes more: turnaround 2 ms, budget 6 ms -> 3 waiting.
  const wide = warmed(2, { prefetchBudgetMs: 6 });
  for (let i = 1; i <= 7; i++) wide.r.submit(`j${i}`);
  assert.deepEqual(wide.p.log.slice(1), ["j1", "j2", "j3", "j4"]);
  wide.r.close();

  // Budget 0: one prefetched job per provider, even for jobs that take no time at all
  // (0 x waiting <= 0 must not open the whole credit).
  for (const ms of [1, 0]) {
    const none = warmed(ms, { prefetchBudgetMs: 0 });
    for (let i = 1; i <= 7; i++) none.r.submit(`j${i}`);
    assert.deepEqual(none.p.log.slice(1), ["j1", "j2"], `turnaround ${ms} ms`);
    none.r.close();
  }
  assert.throws(() => new Balancer({ prefetchBudgetMs: -1, sweepIntervalMs: 0 }), RangeError);
});

Deno.test("balancer prefetch: turnaround is dispatch to answer shared with the jobs waited for, averaged 1/8; late and cancelled answers do not count", () => {
  const r = new Rig({ prefetchDepth: 1 });
  const p = r.provider("p", ["svc"], { slots: 1, credit: 2 });
  const turnaround = () => r.balancer.stats().services[0].turnaroundMs;
  r.submit("w1"); // starts at once
  r.submit("w2"); // prefetched: one slot's worth waits ahead of it
  assert.equal(turnaround(), null);
  r.t = 8;
  p.answer("w1"); // 8 ms, nothing ahead: 8
  assert.equal(turnaround(), 8);
  r.t = 12;
  p.answer("w2"); // 12 ms, 1 ahead: 6 -> 8 + (6 - 8) / 8
  assert.equal(turnaround(), 7.75);
  // Answered after its deadline: not a turnaround.
  r.submit("late", "svc", { deadlineMs: 5 });
  r.sweepAt(17);
  r.t = 100;
  p.answer("late");
  // Answered after CANCEL (its client left): not a turnaround either.
  const o = origin();
  r.submit("gone", "svc", { origin: o });
  o.abandoned = true;
  r.sweepAt(101);
  r.t = 200;
  p.answer("gone", new JobError(ErrorCode.CANCELLED, "Cancelled"));
  assert.equal(turnaround(), 7.75);
  r.close();
});

// --- lost providers ------------------------------------------------------------------------

Deno.test("balancer: a lost provider's job goes back to the head, attempt raised, once; then worker_lost", async () => {
  const r = new Rig(); // retries 1
  const p1 = r.provider("p1");
  const p2 = r.provider("p2");
  r.submit("j1"); // p1
  r.submit("j2"); // p2
  r.submit("j3"); // queued
  p1.lose();
  assert.equal(r.balancer.queueDepth("svc"), 2);
  assert.equal(r.counters().redelivered, 1);
  p2.answer("j2"); // the freed slot takes j1, ahead of j3
  assert.deepEqual(p2.log, ["j2", "j1"]);
  assert.equal(p2.holding[0].attempt, 2);
  // p1's answer after it was lost is dropped.
  p1.answer("j1");
  assert.deepEqual(await r.settled(), ["j2:ok"]);
  p2.lose(); // j1 lost a second time: the retry budget (1) is spent
  assert.deepEqual(await r.settled(), ["j2:ok", "j1:worker_lost"]);
  assert.match(
    r.errors.get("j1")!.message,
    /^Worker lost while running the job \(lost in the test\)$/,
  );
  // j3 waited for a provider of its service; with serviceGraceMs 0, the next sweep ends it.
  r.sweepAt(0);
  assert.deepEqual(await r.settled(), ["j2:ok", "j1:worker_lost", "j3:no_service"]);
  const c = r.counters();
  assert.deepEqual([c.ok, c.redelivered, c.workerLost, c.noService], [1, 1, 1, 1]);
  r.close();
});

Deno.test("balancer: a lost provider's jobs go back to the head in their original order", () => {
  const r = new Rig();
  const p1 = r.provider("p1", ["svc"], { slots: 3 });
  const p2 = r.provider("p2", ["svc"], { credit: 0 });
  for (const j of ["j1", "j2", "j3", "j4"]) r.submit(j); // j1-j3 to p1, j4 queued
  assert.deepEqual(p1.log, ["j1", "j2", "j3"]);
  p1.lose();
  assert.equal(r.balancer.queueDepth("svc"), 4);
  p2.grant(1);
  for (let i = 0; i < 3; i++) p2.answer();
  assert.deepEqual(p2.log, ["j1", "j2", "j3", "j4"]);
  r.close();
});

Deno.test("balancer: a lost provider's job goes at once to an idle provider", () => {
  const r = new Rig();
  const p1 = r.provider("p1", ["svc"], { slots: 2 });
  const p2 = r.provider("p2", ["svc"], { slots: 1 });
  const full = r.provider("full", ["svc"], { credit: 0 });
  r.submit("j1"); // p1 (2 free)
  p1.lose();
  assert.deepEqual(p2.log, ["j1"]);
  assert.equal(p2.holding[0].attempt, 2);
  assert.equal(r.balancer.queueDepth("svc"), 0);
  assert.deepEqual(full.demands, [], "a job that did not stay queued is no demand");
  r.close();
});

Deno.test("balancer: a lost provider's job past its deadline, or out of retries, is answered worker_lost", async () => {
  const r = new Rig({ retries: 1 });
  const p1 = r.provider("p1", ["svc"], { slots: 2 });
  const p2 = r.provider("p2", ["svc"], { credit: 0 });
  r.submit("due", "svc", { deadlineMs: 100 });
  r.submit("fine", "svc", { deadlineMs: 1000 });
  r.t = 100; // due's deadline, before a sweep saw it
  p1.lose();
  assert.deepEqual(await r.settled(), ["due:worker_lost"]);
  assert.equal(r.balancer.queueDepth("svc"), 1);
  p2.grant(1);
  assert.deepEqual(p2.log, ["fine"]);
  r.close();

  const none = new Rig({ retries: 0 });
  const p = none.provider("p");
  none.provider("idle");
  none.submit("j1");
  p.lose();
  assert.deepEqual(await none.settled(), ["j1:worker_lost"]);
  assert.equal(none.counters().redelivered, 0);
  none.close();
});

// --- deadlines -----------------------------------------------------------------------------

Deno.test("balancer: a queued job past its deadline is answered timeout at the next sweep and never dispatched", async () => {
  const r = new Rig({ defaultTimeoutMs: 1000 });
  const p = r.provider("p");
  r.submit("running");
  r.submit("short", "svc", { deadlineMs: 50 });
  r.submit("default"); // the balancer's 1000 ms
  r.sweepAt(49);
  assert.deepEqual(await r.settled(), []);
  r.sweepAt(50);
  assert.deepEqual(await r.settled(), ["short:timeout"]);
  assert.equal(r.errors.get("short")!.message, "Timed out waiting in the queue");
  assert.deepEqual(r.observed.at(-1), ["svc", "timeout", 50, NaN, null]);
  r.sweepAt(999);
  assert.equal(r.balancer.queueDepth("svc"), 1);
  r.sweepAt(1000);
  // "running" timed out as well (its deadline is 1000 too): answered, CANCEL sent.
  assert.deepEqual(await r.settled(), ["short:timeout", "default:timeout", "running:timeout"]);
  assert.deepEqual(p.log, ["running"]);
  assert.deepEqual(p.cancels, ["running"]);
  r.close();
});

Deno.test("balancer: a running job past its deadline is answered timeout, CANCEL sent, payload let go; its slot stays taken until answered", async () => {
  const r = new Rig();
  const p = r.provider("p");
  r.submit("j1", "svc", {
    deadlineMs: 100,
    body: new Uint8Array(64),
    headers: [["x-a", "1"]],
  });
  r.submit("j2");
  r.sweepAt(99);
  assert.deepEqual(p.cancels, []);
  r.sweepAt(100);
  assert.deepEqual(await r.settled(), ["j1:timeout"]);
  assert.equal(r.errors.get("j1")!.message, "Timed out while running");
  assert.deepEqual(r.observed.at(-1), ["svc", "timeout", 0, 100, "p"]);
  assert.deepEqual(p.cancels, ["j1"]);
  assert.equal(p.holding[0].job.body.length, 0);
  assert.deepEqual(p.holding[0].job.headers, []);
  assert.equal(r.balancer.heldBy(p), 1);
  r.sweepAt(150);
  assert.deepEqual(p.cancels, ["j1"], "CANCEL is sent once");
  assert.deepEqual(p.log, ["j1"], "j2 waits for the slot");
  p.answer("j1"); // the late answer frees the slot; j1 stays answered once
  assert.deepEqual(p.log, ["j1", "j2"]);
  assert.deepEqual(await r.settled(), ["j1:timeout"]);
  assert.equal(r.counters().ok, 0);
  r.close();
});

Deno.test("balancer: a provider that leaves a timed-out job unanswered cancelGraceMs past its deadline is cut off; one without evict never is", async () => {
  const r = new Rig({ cancelGraceMs: 300 });
  const bad = r.provider("bad", ["svc"], { slots: 2, evictable: true });
  const spare = r.provider("spare", ["svc"], { credit: 0 });
  r.submit("stuck", "svc", { deadlineMs: 100 });
  r.submit("other", "svc", { deadlineMs: 10_000 });
  r.sweepAt(100);
  r.sweepAt(399);
  assert.deepEqual(bad.evictions, []);
  r.sweepAt(400);
  assert.deepEqual(bad.evictions, [
    "A job was not answered 300 ms after its deadline and CANCEL",
  ]);
  assert.deepEqual(r.balancer.stats().providers.map((p) => p.name), ["spare"]);
  // Its other job is redelivered.
  spare.grant(1);
  assert.deepEqual(spare.log, ["other"]);
  assert.equal(spare.holding[0].attempt, 2);
  spare.answer();
  assert.deepEqual(await r.settled(), ["stuck:timeout", "other:ok"]);
  r.close();

  const pool = new Rig({ cancelGraceMs: 300 });
  const p = pool.provider("pool");
  pool.submit("stuck", "svc", { deadlineMs: 100 });
  pool.sweepAt(100);
  pool.sweepAt(100_000);
  assert.equal(pool.balancer.stats().providers.length, 1);
  pool.close();
  assert.equal(p.evict, undefined);
});

// --- the client went away ------------------------------------------------------------------

Deno.test("balancer: a queued job whose client went away is dropped cancelled at the next sweep, never dispatched", async () => {
  const r = new Rig();
  const p = r.provider("p");
  r.submit("j1");
  const o = origin();
  r.submit("j2", "svc", { origin: o });
  r.submit("j3");
  o.abandoned = true;
  r.sweepAt(1);
  assert.deepEqual(await r.settled(), ["j2:cancelled"]);
  assert.equal(r.errors.get("j2")!.message, "The client went away");
  assert.equal(r.balancer.queueDepth("svc"), 1);
  p.answer();
  assert.deepEqual(p.log, ["j1", "j3"]);
  assert.equal(r.counters().cancelled, 1);
  r.close();
});

Deno.test("balancer: a freed slot skips a job whose client went away, without waiting for a sweep", async () => {
  const r = new Rig();
  const p = r.provider("p");
  r.submit("j1");
  const o = origin();
  r.submit("j2", "svc", { origin: o });
  r.submit("j3");
  o.abandoned = true;
  p.answer("j1");
  assert.deepEqual(p.log, ["j1", "j3"]);
  assert.deepEqual(await r.settled(), ["j1:ok", "j2:cancelled"]);
  r.close();
});

Deno.test("balancer: a dispatched job whose client went away is cancelled onward once and settled by the provider's answer", async () => {
  const r = new Rig();
  const p = r.provider("p");
  const o = origin();
  r.submit("j1", "svc", { origin: o });
  o.abandoned = true;
  r.sweepAt(1);
  assert.deepEqual(p.cancels, ["j1"]);
  assert.deepEqual(await r.settled(), [], "the balancer leaves the answer to the provider");
  r.sweepAt(2);
  assert.deepEqual(p.cancels, ["j1"]);
  p.answer("j1", new JobError(ErrorCode.CANCELLED, "Cancelled"));
  assert.deepEqual(await r.settled(), ["j1:cancelled"]);
  assert.equal(r.counters().cancelled, 1);
  r.close();
});

// --- drain ---------------------------------------------------------------------------------

Deno.test("balancer: a draining provider is handed nothing, whatever its credit", () => {
  const r = new Rig();
  const d = r.provider("d", ["svc"], { slots: 2 });
  d.draining = true;
  const p = r.provider("p");
  r.submit("j1");
  r.submit("j2");
  assert.deepEqual([d.log, p.log], [[], ["j1"]]);
  d.grant(3);
  assert.deepEqual(d.log, []);
  p.answer();
  assert.deepEqual(p.log, ["j1", "j2"]);
  r.close();
});

Deno.test("balancer: jobs a draining provider still holds at its DRAIN grace are taken back and redelivered; its late answer is dropped", async () => {
  const r = new Rig();
  const d = r.provider("d", ["svc"], { slots: 2 });
  const spare = r.provider("spare", ["svc"], { credit: 0 });
  r.submit("done");
  r.submit("held");
  d.draining = true;
  d.drainDeadline = r.at(200);
  r.t = 150;
  d.answer("done");
  r.sweepAt(199);
  assert.deepEqual(d.cancels, []);
  r.sweepAt(200);
  assert.deepEqual(d.cancels, ["held"]);
  assert.equal(r.balancer.heldBy(d), 0);
  assert.equal(r.balancer.stats().providers.length, 2, "it stays attached, draining");
  assert.equal(r.counters().redelivered, 1);
  d.answer("held"); // too late: dropped
  spare.grant(1);
  assert.deepEqual(spare.log, ["held"]);
  assert.equal(spare.holding[0].attempt, 2);
  spare.answer();
  assert.deepEqual(await r.settled(), ["done:ok", "held:ok"]);
  assert.equal(r.counters().ok, 2);
  r.close();

  const none = new Rig({ retries: 0 });
  const n = none.provider("n");
  none.submit("held");
  n.draining = true;
  n.drainDeadline = none.at(100);
  none.sweepAt(100);
  assert.deepEqual(await none.settled(), ["held:worker_lost"]);
  assert.match(none.errors.get("held")!.message, /\(drain grace passed\)$/);
  none.close();
});

// --- unknown services, the start-up grace, a full queue -------------------------------------

Deno.test("balancer unknown services: a name no provider serves, served or is expected is answered no_service at once, even in the start-up grace", async () => {
  const r = new Rig({ serviceGraceMs: 5000 });
  r.submit("x1", "x");
  assert.deepEqual(await r.settled(), ["x1:no_service"]);
  assert.equal(r.errors.get("x1")!.message, 'No service "x"');
  assert.deepEqual(r.observed, [["x", "no_service", NaN, NaN, null]]);
  assert.deepEqual(r.balancer.stats().services, [], "a mistyped name leaves no state");
  // A provider of another service changes nothing for it.
  r.provider("p", ["y"]);
  r.submit("x2", "x");
  assert.deepEqual(await r.settled(), ["x1:no_service", "x2:no_service"]);
  r.close();
});

Deno.test("balancer unknown services: in the start-up grace a job for an expected service (expectServices, a prefix route's service) waits for its first provider; after the grace, no_service at once", async () => {
  const r = new Rig({
    serviceGraceMs: 5000,
    expectServices: ["x"],
    routes: [{ prefix: "/api", service: "api" }],
  });
  r.submit("x1", "x");
  r.t = 1000;
  r.submit("a1", "api", { protocol: "http", method: "GET", path: "/api/users" });
  r.submit("n1", "nope");
  assert.deepEqual(await r.settled(), ["n1:no_service"]);
  assert.deepEqual(r.balancer.stats().services.map((s) => [s.name, s.served, s.queued]), [
    ["x", false, 1],
    ["api", false, 1],
  ]);
  r.sweepAt(4999);
  const p = r.provider("p", ["x"]);
  assert.deepEqual(p.log, ["x1"]);
  // A waiting job waits serviceGraceMs from its arrival, then no_service; the name is forgotten.
  r.sweepAt(5999);
  assert.deepEqual(await r.settled(), ["n1:no_service"]);
  r.sweepAt(6000);
  assert.deepEqual(await r.settled(), ["n1:no_service", "a1:no_service"]);
  assert.equal(r.errors.get("a1")!.message, 'No service "api"');
  assert.deepEqual(r.balancer.stats().services.map((s) => s.name), ["x"]);
  // Past the start-up grace an expected name never served is refused at once.
  r.submit("a2", "api", { protocol: "http", method: "GET", path: "/api" });
  assert.deepEqual(await r.settled(), ["n1:no_service", "a1:no_service", "a2:no_service"]);
  assert.deepEqual(r.observed.at(-1), ["api", "no_service", NaN, NaN, null]);
  r.close();

  // The start-up grace is serviceGraceMs from the balancer's start, to the millisecond.
  const edge = new Rig({ serviceGraceMs: 5000, expectServices: ["a", "b"] });
  edge.t = 4999;
  edge.submit("in", "a");
  edge.t = 5000;
  edge.submit("out", "b");
  assert.deepEqual(await edge.settled(), ["out:no_service"]);
  assert.equal(edge.balancer.queueDepth("a"), 1);
  edge.close();
});

Deno.test('balancer unknown services: expectServices("any") (handlers whose names are not known before they start) waits for every name in the start-up grace; expectServices(names) narrows it at once', async () => {
  const r = new Rig({ serviceGraceMs: 5000, expectServices: "any" });
  r.submit("x1", "x");
  r.submit("y1", "y");
  assert.deepEqual(await r.settled(), []);
  // The pool started: its names are now known; the others waiting are refused at once.
  r.balancer.expectServices(["x"]);
  assert.deepEqual(await r.settled(), ["y1:no_service"]);
  r.submit("z1", "z");
  r.submit("x2", "x");
  assert.deepEqual(await r.settled(), ["y1:no_service", "z1:no_service"]);
  const p = r.provider("p", ["x"], { slots: 2 });
  assert.deepEqual(p.log, ["x1", "x2"]);
  r.close();
});

Deno.test("balancer: a service that had providers waits serviceGraceMs for one after losing them all", async () => {
  const r = new Rig({ serviceGraceMs: 5000 });
  const p = r.provider("p");
  r.t = 10_000; // long after the start-up grace
  p.lose();
  r.submit("j1");
  r.sweepAt(14_999);
  assert.deepEqual(await r.settled(), []);
  r.sweepAt(15_000);
  assert.deepEqual(await r.settled(), ["j1:no_service"]);
  r.submit("j2");
  r.sweepAt(19_999);
  const back = r.provider("back");
  assert.deepEqual(back.log, ["j2"]);
  r.close();
});

Deno.test("balancer: at most maxPendingServices unknown services are waited for; serviceGraceMs 0 never waits", async () => {
  const r = new Rig({ serviceGraceMs: 5000, maxPendingServices: 2, expectServices: "any" });
  r.submit("a1", "a");
  r.submit("b1", "b");
  r.submit("c1", "c");
  r.submit("a2", "a"); // a is already waited for
  assert.deepEqual(await r.settled(), ["c1:no_service"]);
  assert.equal(
    r.errors.get("c1")!.message,
    'No service "c" (too many unknown services are waited for)',
  );
  assert.deepEqual(r.balancer.stats().services.map((s) => [s.name, s.queued]), [
    ["a", 2],
    ["b", 1],
  ]);
  // A service a provider serves is no longer waited for: room for another unknown one.
  const p = r.provider("p", ["a"], { slots: 2 });
  assert.deepEqual(p.log, ["a1", "a2"]);
  r.submit("c2", "c");
  assert.equal(r.balancer.queueDepth("c"), 1);
  r.close();

  const strict = new Rig({ serviceGraceMs: 0 });
  strict.submit("x1", "x");
  strict.submit("e1", "");
  assert.deepEqual(await strict.settled(), ["x1:no_service", "e1:no_service"]);
  assert.equal(strict.errors.get("e1")!.message, "No service named in the path");
  assert.deepEqual(strict.balancer.stats().services, []);
  // Nor for a service whose providers all left.
  strict.provider("gone", ["y"]).lose();
  strict.submit("y1", "y");
  assert.deepEqual(await strict.settled(), ["x1:no_service", "e1:no_service", "y1:no_service"]);
  strict.close();
});

Deno.test("balancer: a job finding maxQueue jobs waiting is refused overloaded", async () => {
  const r = new Rig({ maxQueue: 2 });
  const p = r.provider("p");
  for (const name of ["j1", "j2", "j3", "j4"]) r.submit(name);
  assert.deepEqual(await r.settled(), ["j4:overloaded"]);
  assert.equal(r.errors.get("j4")!.message, 'Queue for "svc" is full');
  assert.deepEqual(r.observed, [["svc", "overloaded", NaN, NaN, null]]);
  assert.equal(r.counters().overloaded, 1);
  p.answer();
  r.submit("j5");
  assert.deepEqual(await r.settled(), ["j4:overloaded", "j1:ok"]);
  assert.equal(r.balancer.queueDepth("svc"), 2);
  r.close();
});

// --- refusals at dispatch and before queuing ------------------------------------------------

Deno.test("balancer: a dispatch the provider refuses answers the job and gives back the credit, held entry and attempt", async () => {
  const r = new Rig();
  const p = r.provider("p");
  p.refuseNext = new JobError(ErrorCode.BAD_REQUEST, "Cannot carry it");
  r.submit("j1");
  p.refuseNext = new Error("Unexpected");
  r.submit("j2");
  assert.deepEqual(await r.settled(), ["j1:bad_request", "j2:internal"]);
  assert.equal(r.errors.get("j2")!.message, "Dispatch failed");
  assert.deepEqual([p.credit, r.balancer.heldBy(p), p.log], [1, 0, []]);
  assert.deepEqual(p.refused.map((qj) => [qj.attempt, qj.provider, qj.dispatched]), [
    [0, null, 0],
    [0, null, 0],
  ]);
  r.submit("j3");
  assert.deepEqual(p.log, ["j3"]);
  assert.equal(p.holding[0].attempt, 1);
  r.close();
});

Deno.test("balancer: a job larger than every provider of its service takes is refused bad_request before it is queued", async () => {
  const r = new Rig();
  const p = r.provider("p");
  p.maxJobBytes = 100;
  const big = r.submit("big", "svc", { body: new Uint8Array(200) });
  const size = jobRingBytes(big);
  assert.deepEqual(await r.settled(), ["big:bad_request"]);
  assert.equal(
    r.errors.get("big")!.message,
    `Request of ${size} bytes exceeds the limit of 100 bytes for the handlers of "svc"`,
  );
  // One provider that takes it is enough.
  const roomy = r.provider("roomy");
  roomy.maxJobBytes = 1000;
  r.submit("small"); // p
  r.submit("big2", "svc", { body: new Uint8Array(200) });
  assert.deepEqual([p.log, roomy.log], [["small"], ["big2"]]);
  r.close();
});

Deno.test("balancer: a job goes only to a provider that takes its size, at once or from the queue", async () => {
  const r = new Rig();
  const p = r.provider("p", ["svc"], { slots: 2 });
  p.maxJobBytes = 100;
  const roomy = r.provider("roomy", ["svc"], { slots: 1 });
  roomy.maxJobBytes = 1000;
  // The fast path would pick p (2 free slots); it cannot take the job.
  r.submit("big1", "svc", { body: new Uint8Array(200) });
  assert.deepEqual([p.log, roomy.log], [[], ["big1"]]);
  // Queued behind a busy roomy: p's free slots take the small jobs and leave the big one.
  r.submit("big2", "svc", { body: new Uint8Array(200) });
  r.submit("s1");
  r.submit("s2");
  assert.deepEqual(p.log, ["s1", "s2"]);
  roomy.answer("big1");
  assert.deepEqual(roomy.log, ["big1", "big2"]);
  assert.deepEqual(await r.settled(), ["big1:ok"]);
  r.close();
});

// --- admin operations (ep disable / enable / drain / set) ------------------------------------

Deno.test("balancer admin: disable takes a provider out of rotation at once; what it holds finishes; enable puts it back and hands it the waiting jobs", async () => {
  const r = new Rig();
  const a = r.provider("a", ["svc"], { slots: 2 });
  const b = r.provider("b", ["svc"], { slots: 1 });
  r.submit("j1");
  assert.deepEqual(a.log, ["j1"]);
  r.balancer.disable(a);
  r.submit("j2");
  r.submit("j3");
  assert.deepEqual([a.log, b.log], [["j1"], ["j2"]], "a has credit but is disabled");
  a.answer("j1");
  assert.deepEqual(a.log, ["j1"], "its freed slot takes nothing");
  assert.equal(r.balancer.queueDepth("svc"), 1);
  const state = (p: FakeProvider) =>
    r.balancer.stats().providers.find((s) => s.name === p.name)!.admin;
  assert.equal(state(a), "disabled");
  assert.equal(state(b), null);
  r.balancer.enable(a);
  assert.deepEqual(a.log, ["j1", "j3"], "enabled: it takes the waiting job at once");
  assert.equal(state(a), null);
  a.answer();
  b.answer();
  assert.deepEqual(await r.settled(), ["j1:ok", "j3:ok", "j2:ok"]);
  r.close();
});

Deno.test("balancer admin: a disabled provider without credit is not told about demand; the others are", () => {
  const r = new Rig();
  const a = r.provider("a", ["svc"], { credit: 0 });
  const b = r.provider("b", ["svc"], { credit: 0 });
  r.balancer.disable(a);
  r.submit("j1");
  assert.deepEqual([a.demands, b.demands], [[], ["svc:1"]]);
  r.close();
});

Deno.test("balancer admin: drain stops dispatch, lets held jobs finish (draining, then drained); with a grace, jobs still held at it are taken back and redelivered", async () => {
  const r = new Rig();
  const d = r.provider("d", ["svc"], { slots: 2 });
  const spare = r.provider("spare", ["svc"], { credit: 0 });
  r.submit("done");
  r.submit("held");
  r.balancer.drain(d, 200);
  const state = () => r.balancer.stats().providers.find((s) => s.name === "d")!.admin;
  assert.equal(state(), "draining");
  r.submit("next");
  assert.deepEqual(d.log, ["done", "held"], "nothing more after the drain");
  r.t = 150;
  d.answer("done");
  assert.deepEqual(d.log, ["done", "held"]);
  r.sweepAt(199);
  assert.deepEqual(d.cancels, []);
  r.sweepAt(200);
  assert.deepEqual(d.cancels, ["held"]);
  assert.equal(r.balancer.heldBy(d), 0);
  assert.equal(state(), "drained", "it holds nothing and takes nothing");
  d.answer("held"); // too late: dropped
  spare.grant(2);
  assert.deepEqual(spare.log, ["held", "next"], "taken back to the head of the queue");
  assert.equal(spare.holding[0].attempt, 2);
  spare.answer();
  spare.answer();
  assert.deepEqual(await r.settled(), ["done:ok", "held:ok", "next:ok"]);
  r.close();

  // Without a grace a drain waits for the jobs however long they take.
  const patient = new Rig();
  const w = patient.provider("w", ["svc"]);
  patient.submit("slow");
  patient.balancer.drain(w);
  patient.sweepAt(29_999); // just before its deadline
  assert.deepEqual(w.cancels, []);
  w.answer("slow");
  assert.deepEqual(await patient.settled(), ["slow:ok"]);
  assert.equal(patient.balancer.stats().providers[0].admin, "drained");
  patient.close();
});

Deno.test("balancer admin: enable ends an operator's drain but not the provider's own DRAIN", () => {
  const r = new Rig();
  const p = r.provider("p");
  p.draining = true; // it sent DRAIN itself
  r.balancer.drain(p);
  r.balancer.enable(p);
  r.submit("j1");
  assert.deepEqual(p.log, [], "still draining on its own account");
  assert.equal(r.balancer.stats().providers[0].admin, null);
  p.draining = false; // a new REGISTER
  p.grant(0);
  assert.deepEqual(p.log, ["j1"]);
  r.close();
});

Deno.test("balancer admin: operations name attached providers and served services only", () => {
  const r = new Rig();
  const p = r.provider("p");
  p.lose();
  for (
    const op of [() => r.balancer.disable(p), () => r.balancer.drain(p), () => r.balancer.enable(p)]
  ) {
    assert.throws(
      op,
      (e: unknown) => e instanceof UnknownWorkerError && e.message === 'No worker "p" is attached',
    );
  }
  assert.throws(() => r.balancer.drain(r.provider("q"), -1), RangeError);
  assert.throws(
    () => r.balancer.setMaxQueue("nope", 5),
    (e: unknown) => e instanceof UnknownServiceError && e.message === 'No service "nope"',
  );
  for (const bad of [-1, 1.5, NaN, 2 ** 32]) {
    assert.throws(() => r.balancer.setMaxQueue("svc", bad), RangeError, String(bad));
  }
  r.close();
});

Deno.test("balancer admin: set max_queue bounds one service's queue at once (jobs already queued stay); null restores the default", async () => {
  const r = new Rig({ maxQueue: 10 });
  r.provider("p", ["svc", "other"], { credit: 0 });
  for (const n of ["a", "b", "c"]) r.submit(n);
  r.balancer.setMaxQueue("svc", 2);
  r.submit("d");
  r.submit("o1", "other");
  assert.deepEqual(await r.settled(), ["d:overloaded"]);
  assert.equal(r.errors.get("d")!.message, 'Queue for "svc" is full');
  const max = (name: string) => r.balancer.stats().services.find((s) => s.name === name)!.maxQueue;
  assert.deepEqual([max("svc"), max("other")], [2, 10]);
  r.balancer.setMaxQueue("svc", null);
  r.submit("e");
  assert.equal(r.balancer.queueDepth("svc"), 4);
  assert.equal(max("svc"), 10);
  r.balancer.setMaxQueue("svc", 0);
  r.submit("f");
  assert.deepEqual(await r.settled(), ["d:overloaded", "f:overloaded"]);
  r.close();
});

Deno.test("balancer stats: a service's busy counts its own jobs in its providers, whose slots (shared) and busy are given apart", () => {
  const r = new Rig();
  r.provider("shared", ["a", "b"], { slots: 4 });
  r.provider("only-a", ["a"], { slots: 2 });
  r.submit("b1", "b");
  r.submit("b2", "b");
  r.submit("a1", "a");
  const row = (name: string) => {
    const s = r.balancer.stats().services.find((x) => x.name === name)!;
    return [s.busy, s.slots, s.providersBusy];
  };
  // a1 went to "shared" (the most free slots: 2 against 2, the first attached).
  assert.deepEqual(row("a"), [1, 6, 3]);
  assert.deepEqual(row("b"), [2, 4, 3]);
  r.close();
});

Deno.test("balancer limits: the limits in force, as given or by default", () => {
  const r = new Rig({ maxQueue: 7, retries: 2 });
  assert.deepEqual(r.balancer.limits(), {
    maxQueue: 7,
    defaultTimeoutMs: 30_000,
    retries: 2,
    serviceGraceMs: 0,
    cancelGraceMs: 10_000,
    maxPendingServices: 100,
    prefetchDepth: 0.5,
    prefetchBudgetMs: 3,
  });
  r.close();
});

Deno.test("balancer observer: every failed job is told with its code, message, request id and provider", async () => {
  const failed: FailedJob[] = [];
  const r = new Rig({ maxQueue: 1, observer: { job() {}, failed: (f) => void failed.push(f) } });
  const p = r.provider("p");
  r.submit("j1", "svc", { requestId: "req-1" });
  r.submit("j2", "svc", { requestId: "req-2" }); // queued
  r.submit("j3", "svc", { requestId: "req-3" }); // a queue of 1 is full: overloaded
  p.answer("j1", new JobError(ErrorCode.HANDLER_ERROR, "Handler failed"));
  await r.settled();
  assert.deepEqual(failed, [
    {
      service: "svc",
      outcome: "overloaded",
      code: ErrorCode.OVERLOADED,
      message: 'Queue for "svc" is full',
      requestId: "req-3",
      provider: null,
      error: failed[0].error,
    },
    {
      service: "svc",
      outcome: "error",
      code: ErrorCode.HANDLER_ERROR,
      message: "Handler failed",
      requestId: "req-1",
      provider: "p",
      error: failed[1].error,
    },
  ]);
  assert.ok(failed.every((f) => f.error instanceof JobError));
  p.answer("j2");
  await r.settled();
  assert.equal(failed.length, 2, "ok answers are not failures");
  r.close();
});

// --- registration changes, routing, endpoints, close ---------------------------------------

Deno.test("balancer: a provider's new registration takes effect at once", () => {
  const r = new Rig({ serviceGraceMs: 5000, expectServices: ["b"] });
  const p = r.provider("p", ["a"], { slots: 1 });
  r.submit("b1", "b");
  assert.deepEqual(p.log, []);
  r.balancer.updateProvider(p, new Set(["b"]), 2);
  assert.deepEqual(p.log, ["b1"]);
  assert.equal(p.slots, 2);
  r.submit("a1", "a");
  assert.deepEqual(p.log, ["b1"], "it serves a no more");
  r.close();
});

Deno.test("balancer: HTTP jobs are routed (prefix routes, then the route function) before queuing", () => {
  const r = new Rig({
    routes: [{ prefix: "/api", service: "api" }, { prefix: "/api/users", service: "user" }],
    route: (job) => job.path === "/custom" ? "user" : undefined,
  });
  const p = r.provider("p", ["api", "user", "echo"], { slots: 10 });
  const http = { protocol: "http" as const, method: "GET" };
  r.submit("u", "api", { ...http, path: "/api/users/7" });
  r.submit("a", "api", { ...http, path: "/api/x" });
  r.submit("c", "custom", { ...http, path: "/custom" });
  r.submit("e", "echo", { ...http, path: "/echo" });
  r.submit("ep", "api", { path: "/api/users" }); // EP: never routed
  assert.deepEqual(
    p.holding.map((qj) => `${r.nameOf(qj)}>${qj.service}`),
    ["u>user", "a>api", "c>user", "e>echo", "ep>api"],
  );
  r.close();
});

Deno.test("balancer: a route function that fails answers the job internal with its request id, not the failure's message", async () => {
  const r = new Rig({
    route: (job) => {
      if (job.path === "/sync") throw new Error("secret sync detail");
      return Promise.reject(new Error("secret async detail"));
    },
  });
  r.provider("p", ["svc"]);
  const http = { protocol: "http" as const, method: "GET", requestId: undefined };
  r.submit("s", "svc", { ...http, path: "/sync", headers: [["x-request-id", "rid-1"]] });
  r.submit("a", "svc", { ...http, path: "/async", headers: [["x-request-id", "rid-2"]] });
  assert.deepEqual(await r.settled(), ["s:internal", "a:internal"]);
  assert.equal(r.errors.get("s")!.message, "Routing failed (request rid-1)");
  assert.equal(r.errors.get("a")!.message, "Routing failed (request rid-2)");
  r.close();
});

Deno.test("balancer: /_ep/ is answered by the endpoints (internal first), health and loopback-only stats by default, even after close", () => {
  const r = new Rig({
    internal: (job) => job.path === "/_ep/mine" ? { body: "mine" } : undefined,
  });
  r.t = 42;
  const ask = (path: string, remote = "127.0.0.1:9") => {
    const res = r.balancer.submit({
      service: "_ep",
      protocol: "http",
      method: "GET",
      path,
      query: "",
      headers: [],
      body: new Uint8Array(0),
      deadlineMs: 0,
      priority: 0,
      remote,
    });
    assert.ok(!(res instanceof Promise), "answered at once");
    return res;
  };
  assert.equal(ask("/_ep/mine").body, "mine");
  const health = ask("/_ep/health", "10.0.0.1:9");
  assert.equal(health.status, 200);
  assert.deepEqual(JSON.parse(health.body as string), { status: "ok", uptimeMs: 42 });
  assert.equal(ask("/_ep/stats", "10.0.0.1:9").status, 403);
  const stats = ask("/_ep/stats");
  assert.equal(stats.status, 200);
  assert.deepEqual(JSON.parse(stats.body as string), {
    uptimeMs: 42,
    services: [],
    providers: [],
  });
  assert.throws(
    () => ask("/_ep/nothing"),
    (e: unknown) => e instanceof JobError && e.message === 'No ep endpoint "/_ep/nothing"',
  );
  r.close();
  assert.equal(ask("/_ep/health").status, 200);
  assert.deepEqual(r.observed, [], "ep endpoints are not jobs");
});

Deno.test("balancer: close answers queued jobs shutting_down, leaves held ones to finish, refuses new ones", async () => {
  const r = new Rig();
  const p = r.provider("p");
  r.submit("held");
  r.submit("queued");
  r.balancer.close();
  assert.deepEqual(await r.settled(), ["queued:shutting_down"]);
  assert.equal(r.balancer.heldBy(p), 1);
  r.submit("late");
  p.answer("held");
  assert.deepEqual(await r.settled(), ["queued:shutting_down", "late:shutting_down", "held:ok"]);
  r.close();
});

// --- hedging (SPEC.md §9.10) -----------------------------------------------------------------

Deno.test("balancer hedging: a job running past its service's delay is copied to another provider with a free slot; the copy answering first wins, the original is cancelled; one answer", async () => {
  const r = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1 });
  const p1 = r.provider("p1");
  const p2 = r.provider("p2");
  r.submit("j1");
  assert.deepEqual([p1.log, p2.log], [["j1"], []]);
  r.sweepAt(49);
  assert.deepEqual(p2.log, [], "not before its delay");
  r.sweepAt(50);
  assert.deepEqual(p2.log, ["j1"], "the copy, on the provider with a free slot");
  const copy = p2.holding[0];
  assert.equal(copy.hedgeCopy, true);
  assert.equal(copy.attempt, 2, "a copy is one delivery more than the original");
  assert.equal(p1.holding[0].hedgeCopy, undefined);
  r.sweepAt(200);
  assert.deepEqual(p2.log, ["j1"], "one copy per job, ever");
  r.t = 210;
  p2.answer("j1", { body: "from the copy" });
  assert.deepEqual(await r.settled(), ["j1:ok"]);
  assert.deepEqual(p1.cancels, ["j1"], "the original is cancelled");
  assert.deepEqual(p2.cancels, []);
  // The original's late answer frees its slot and nothing more.
  assert.equal(r.balancer.heldBy(p1), 1);
  p1.answer("j1");
  assert.equal(r.balancer.heldBy(p1), 0);
  assert.deepEqual(await r.settled(), ["j1:ok"]);
  const c = r.counters();
  assert.deepEqual([c.ok, c.hedged, c.hedgeWins], [1, 1, 1]);
  // The client's view: dispatched when the original was, answered by the copy's provider.
  assert.deepEqual(r.observed, [["svc", "ok", 0, 210, "p2"]]);
  r.close();
});

Deno.test("balancer hedging: the original answering first wins; the copy is cancelled and its late answer only frees its slot", async () => {
  const r = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1 });
  const p1 = r.provider("p1");
  const p2 = r.provider("p2");
  r.submit("j1");
  r.sweepAt(60);
  assert.deepEqual(p2.log, ["j1"]);
  p1.answer("j1");
  assert.deepEqual(await r.settled(), ["j1:ok"]);
  assert.deepEqual(p2.cancels, ["j1"]);
  p2.answer("j1", new JobError(ErrorCode.CANCELLED, "Cancelled"));
  assert.deepEqual(await r.settled(), ["j1:ok"]);
  const c = r.counters();
  assert.deepEqual([c.ok, c.cancelled, c.hedged, c.hedgeWins], [1, 0, 1, 0]);
  assert.equal(r.balancer.heldBy(p2), 0);
  r.close();
});

Deno.test("balancer hedging: no copy while no other provider has a free slot now; the first slot freed takes it (before nothing); never the provider running it", () => {
  const r = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1 });
  const p1 = r.provider("p1");
  const p2 = r.provider("p2");
  r.submit("j1"); // p1
  r.submit("j2"); // p2
  r.sweepAt(100);
  assert.deepEqual([p1.log, p2.log], [["j1"], ["j2"]], "both past the delay, nowhere to go");
  // p2 answers j2: its free slot takes a copy of j1, which has run longest past its delay.
  p2.answer("j2");
  assert.deepEqual(p2.log, ["j2", "j1"]);
  assert.equal(p2.holding[0].hedgeCopy, true);
  // p1 frees no slot for anything of its own: j1's copy is on p2, and j1 runs on p1.
  r.close();

  // A provider with credit but no free slot (prefetch credit) takes no copy.
  const q = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1 });
  const a = q.provider("a", ["svc"], { slots: 1, credit: 1 });
  const b = q.provider("b", ["svc"], { slots: 1, credit: 3 });
  q.submit("j1"); // a
  q.submit("j2"); // b
  q.sweepAt(100);
  assert.deepEqual([a.log, b.log], [["j1"], ["j2"]]);
  q.close();
});

Deno.test("balancer hedging: no copy to a provider that reported no free slot (its slot taken by another balancer's job), though this balancer holds none there", () => {
  const r = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1 });
  r.provider("p1");
  const p2 = r.provider("p2");
  p2.credit = 0;
  r.submit("j1"); // p1
  r.sweepAt(100);
  // p2 grants a READY while another balancer's job runs in its only slot (it said free 0).
  p2.reportedFree = 0;
  p2.grant();
  assert.deepEqual(p2.log, [], "no copy waits behind another balancer's job");
  // Its slot frees (it reports 1 free): the copy goes now.
  p2.reportedFree = 1;
  r.balancer.pull(p2);
  assert.deepEqual(p2.log, ["j1"]);
  r.close();
});

Deno.test("balancer hedging: with one provider only (the all-in-one pool), the copy goes to another of its slots", async () => {
  const r = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1 });
  const pool = r.provider("pool", ["svc"], { slots: 2 });
  r.submit("j1");
  r.sweepAt(50);
  assert.deepEqual(pool.log, ["j1", "j1"]);
  assert.equal(pool.holding[1].hedgeCopy, true);
  pool.answer("j1"); // the original (held first)
  assert.deepEqual(await r.settled(), ["j1:ok"]);
  assert.deepEqual(pool.cancels, ["j1"]);
  r.close();
});

Deno.test("balancer hedging: without a fixed delay, a job is hedged after its service's p95 service time (nearest rank of the last 128), known after 20 answers", () => {
  const r = new Rig({ hedge: { svc: {} }, hedgeBudget: 1 });
  const p1 = r.provider("p1");
  const p2 = r.provider("p2", ["svc"], { credit: 0 }); // no free slot while learning
  const stats = () => r.balancer.stats().services[0];
  // 19 jobs of 1..19 ms: no p95 yet, so the long one is not hedged.
  for (let k = 1; k <= 19; k++) {
    r.submit(`w${k}`);
    r.t += k;
    p1.answer();
  }
  assert.equal(stats().hedgeAfterMs, null);
  r.submit("long");
  p2.grant(1);
  r.sweepAt(r.t + 1000);
  assert.deepEqual(p2.log, [], "no p95 yet: not hedged");
  p1.answer("long"); // the 20th time: 1000 ms
  // Times 1..19 and 1000: the p95 (19th of 20) is 19.
  assert.equal(stats().hedgeAfterMs, 19);
  r.submit("j");
  const start = r.t;
  r.sweepAt(start + 18);
  assert.deepEqual(p2.log, []);
  r.sweepAt(start + 19);
  assert.deepEqual(p2.log, ["j"]);
  r.close();
});

Deno.test("balancer hedging budget: at most 5 % of a service's last 200 jobs are hedged", () => {
  const r = new Rig({ hedge: { svc: { ms: 10 } } });
  const p1 = r.provider("p1");
  const p2 = r.provider("p2");
  const copyAt: number[] = []; // the job number of each copy
  for (let i = 1; i <= 600; i++) {
    r.submit(`j${i}`);
    const before = p2.log.length;
    r.sweepAt(r.t + 10);
    if (p2.log.length > before) copyAt.push(i);
    p1.answer(`j${i}`); // the original wins; a copy is cancelled and then answers
    if (p2.holding.length > 0) p2.answer(`j${i}`);
  }
  // One copy per 20 jobs: the first at the 20th (1 ≤ 5 % of 20), then as the window allows.
  assert.deepEqual(copyAt, Array.from({ length: 30 }, (_, k) => 20 * (k + 1)));
  for (let i = 1; i + 199 <= 600; i++) {
    const inWindow = copyAt.filter((n) => n >= i && n < i + 200).length;
    assert.ok(inWindow <= 10, `jobs ${i}..${i + 199}: ${inWindow} hedged`);
  }
  assert.equal(r.counters().hedged, 30);
  r.close();
  assert.throws(() => new Balancer({ hedgeBudget: 2, sweepIntervalMs: 0 }), RangeError);
  assert.throws(
    () => new Balancer({ hedge: { svc: { ms: 0 } }, sweepIntervalMs: 0 }),
    RangeError,
  );
});

Deno.test("balancer hedging: a job is hedged only when its service is marked (options, or a provider's REGISTER) or its request says ep-hedge: 1; ep-hedge: 0 never", () => {
  // Marked by a provider (REGISTER): after its delay.
  const r = new Rig({ hedgeBudget: 1 });
  const p1 = r.provider("p1", ["svc"], { hedge: new Map([["svc", 30]]) });
  const p2 = r.provider("p2");
  r.submit("marked");
  r.sweepAt(30);
  assert.deepEqual(p2.log, ["marked"]);
  p1.answer("marked");
  p2.answer("marked");
  r.submit("refused", "svc", { hedge: false });
  r.sweepAt(r.t + 1000);
  assert.deepEqual(p2.log, ["marked"], "ep-hedge: 0");
  r.close();

  // Not marked: only a request that asks, after the service's p95.
  const u = new Rig({ hedgeBudget: 1 });
  const a = u.provider("a");
  const b = u.provider("b", ["svc"], { credit: 0 });
  for (let k = 1; k <= 20; k++) {
    u.submit(`w${k}`);
    u.t += 5;
    a.answer();
  }
  b.grant(1);
  u.submit("plain");
  u.sweepAt(u.t + 1000);
  assert.deepEqual(b.log, [], "an unmarked service's job is not hedged");
  a.answer("plain");
  u.submit("asked", "svc", { hedge: true });
  const start = u.t;
  u.sweepAt(start + 4);
  assert.deepEqual(b.log, []);
  u.sweepAt(start + 5);
  assert.deepEqual(b.log, ["asked"], "after the p95 (5 ms)");
  u.close();

  // The balancer's options win over a provider's delay; hedgeBudget 0 turns hedging off.
  const o = new Rig({ hedge: { svc: { ms: 80 } }, hedgeBudget: 1 });
  o.provider("x", ["svc"], { hedge: new Map([["svc", 10]]) });
  o.provider("y");
  assert.equal(o.balancer.stats().services[0].hedgeAfterMs, 80);
  o.close();
  const off = new Rig({ hedge: { svc: { ms: 10 } }, hedgeBudget: 0 });
  off.provider("x");
  const y = off.provider("y");
  off.submit("j");
  off.sweepAt(100);
  assert.deepEqual(y.log, []);
  off.close();
});

Deno.test("balancer hedging: a copy the provider refuses is dropped quietly; the original still answers, and the job is not hedged again", async () => {
  const r = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1 });
  const p1 = r.provider("p1");
  const p2 = r.provider("p2");
  const p3 = r.provider("p3", ["svc"], { credit: 0 });
  r.submit("j1");
  p2.refuseNext = new JobError(ErrorCode.BAD_REQUEST, "Too large for this one");
  r.sweepAt(50);
  assert.equal(p2.refused.length, 1);
  assert.deepEqual(await r.settled(), [], "the client is not answered by a refused copy");
  p3.grant(1);
  r.sweepAt(60);
  assert.deepEqual(p3.log, [], "one try per job");
  p1.answer("j1");
  assert.deepEqual(await r.settled(), ["j1:ok"]);
  assert.equal(r.counters().hedged, 0);
  r.close();
});

Deno.test("balancer hedging: a provider lost with one copy: the other carries the job (no redelivery); lost with the last, the job is redelivered", async () => {
  const r = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1, retries: 1 });
  const p1 = r.provider("p1");
  const p2 = r.provider("p2");
  const p3 = r.provider("p3", ["svc"], { credit: 0 });
  r.submit("j1");
  r.sweepAt(50);
  p1.lose(); // the original's provider
  assert.equal(r.counters().redelivered, 0);
  assert.equal(r.balancer.queueDepth("svc"), 0);
  p2.answer("j1");
  assert.deepEqual(await r.settled(), ["j1:ok"]);

  r.submit("j2"); // p2
  p3.grant(1);
  r.sweepAt(200);
  assert.deepEqual(p3.log, ["j2"]);
  p3.lose(); // the copy's provider: the original runs on
  assert.equal(r.counters().redelivered, 0);
  p2.lose(); // and now the original's: no copy left, it is redelivered
  assert.equal(r.counters().redelivered, 1);
  assert.equal(r.balancer.queueDepth("svc"), 1);
  r.close();
});

Deno.test("balancer hedging: a hedged job past its deadline is answered timeout once and both copies are cancelled; a client that goes away cancels both", async () => {
  const r = new Rig({ hedge: { svc: { ms: 50 } }, hedgeBudget: 1 });
  const p1 = r.provider("p1");
  const p2 = r.provider("p2");
  r.submit("j1", "svc", { deadlineMs: 100 });
  r.sweepAt(50);
  r.sweepAt(100);
  assert.deepEqual(await r.settled(), ["j1:timeout"]);
  assert.deepEqual([p1.cancels, p2.cancels], [["j1"], ["j1"]]);
  p1.answer("j1");
  p2.answer("j1");
  assert.equal(r.counters().timeout, 1);

  const o = origin();
  r.submit("j2", "svc", { origin: o });
  r.sweepAt(160);
  assert.equal(p2.holding.length + p1.holding.length, 2);
  o.abandoned = true;
  r.sweepAt(161);
  assert.deepEqual([p1.cancels, p2.cancels], [["j1", "j2"], ["j1", "j2"]]);
  p2.answer("j2", new JobError(ErrorCode.CANCELLED, "Cancelled"));
  p1.answer("j2", new JobError(ErrorCode.CANCELLED, "Cancelled"));
  assert.deepEqual(await r.settled(), ["j1:timeout", "j2:cancelled"]);
  assert.equal(r.counters().cancelled, 1);
  r.close();
});

Deno.test("balancer hedging arms one timer for the next job to reach its delay, and none for a service that is not hedged", async () => {
  const realSet = globalThis.setTimeout;
  const started: number[] = [];
  globalThis.setTimeout = ((fn: () => void, ms: number) => {
    started.push(ms);
    return realSet(fn, ms);
  }) as typeof setTimeout;
  let t = 1000;
  const b = new Balancer({ now: () => t, hedge: { svc: { ms: 40 } }, hedgeBudget: 1 });
  const held: QueuedJob[] = [];
  const provider = (name: string, service: string): Provider => ({
    name,
    services: new Set([service]),
    slots: 1,
    credit: 1,
    draining: false,
    dispatch(qj) {
      (this as { credit: number }).credit--;
      held.push(qj);
    },
    cancel() {},
  });
  const job = (service: string): Job => ({
    service,
    protocol: "ep",
    method: "EP",
    path: "/" + service,
    query: "",
    headers: [],
    body: new Uint8Array(0),
    deadlineMs: 5000,
    priority: 0,
    remote: "test",
  });
  try {
    b.addProvider(provider("p", "svc"));
    b.addProvider(provider("q", "other"));
    const answers = [b.submit(job("other"))];
    assert.deepEqual(started, [5000], "a job of a service not hedged: its deadline's sweep only");
    t += 5;
    answers.push(b.submit(job("svc")));
    assert.deepEqual(started, [5000, 40], "the hedge check, at the job's delay");
    b.close();
    for (const qj of held) b.finish(qj.provider!, qj, { body: "x" });
    await Promise.all(answers);
  } finally {
    globalThis.setTimeout = realSet;
  }
});

Deno.test("balancer tells how long the oldest job queued for some services has waited (0 when none)", () => {
  const r = new Rig();
  r.provider("p", ["a", "b"]);
  r.provider("q", ["c"], { credit: 0 });
  r.submit("run", "a");
  assert.equal(r.balancer.oldestWaitMs(["a", "b", "c"]), 0);
  r.t = 10;
  r.submit("c1", "c");
  r.t = 15;
  r.submit("c2", "c", { priority: 9 });
  r.t = 40;
  assert.equal(r.balancer.oldestWaitMs(["c"]), 30);
  assert.equal(r.balancer.oldestWaitMs(["a", "b"]), 0);
  assert.equal(r.balancer.oldestWaitMs(["c", "a"]), 30);
  r.close();
});

Deno.test("balancer observer: refusals before a service is known (no service in the path, shutting down) are told too", async () => {
  const r = new Rig();
  r.submit("j1", "");
  r.close();
  r.submit("j2", "svc");
  await r.settled();
  assert.deepEqual(r.answers, ["j1:no_service", "j2:shutting_down"]);
  assert.deepEqual(r.observed.map(([s, o]) => [s, o]), [["", "no_service"], ["", "shutting_down"]]);
});

Deno.test("balancer clock: a worker's DRAIN arms the sweep for its grace: what it still holds then is taken back, though no job is near its deadline", async () => {
  const sent: Frame[] = [];
  const b = new Balancer({ sweepIntervalMs: 5, retries: 0 });
  const link = new WorkerLink(
    { name: "w", lastHeard: 0, version: 2, send: (f) => sent.push(f), evict() {} },
    b,
    1,
    new Set(["svc"]),
  );
  b.addProvider(link);
  link.grant(1);
  const job = Promise.resolve(b.submit(clockJob(60_000))).catch((e) => e);
  assert.equal(sent.filter((f) => f.type === "request").length, 1, "dispatched");
  link.drain(20);
  const result = await Promise.race([job, new Promise((r) => setTimeout(() => r("late"), 5000))]);
  assert.ok(result instanceof JobError && result.code === ErrorCode.WORKER_LOST, String(result));
  assert.ok(sent.some((f) => f.type === "cancel"), "the job is cancelled at the worker");
  b.close();
});

Deno.test("balancer clock: a service a provider's new REGISTER leaves with no provider arms a sweep soon, which then finds its queued jobs' grace", async () => {
  await timersArmed(async (started) => {
    const held: QueuedJob[] = [];
    let t = 1000;
    const b = new Balancer({ now: () => t, serviceGraceMs: 2000 });
    const p = clockProvider(held, 0);
    b.addProvider(p);
    const queued = Promise.resolve(b.submit(clockJob(60_000))).catch((e) => e);
    assert.deepEqual(started, [60_000], "queued: its deadline");
    b.updateProvider(p, new Set(["other"]), 1);
    assert.deepEqual(started, [60_000, 10], "svc has no provider now: a sweep soon");
    t += 10;
    // The real 10 ms timer runs the sweep (waiting with setInterval: setTimeout is counted).
    await new Promise<void>((r) => {
      const id = setInterval(() => {
        if (started.length < 3) return;
        clearInterval(id);
        r();
      }, 5);
    });
    assert.equal(started[2], 1990, "the next at the job's grace");
    t += 1990;
    b.sweep();
    const err = await queued;
    assert.ok(err instanceof JobError && err.code === ErrorCode.NO_SERVICE, String(err));
    b.close();
  });
});
