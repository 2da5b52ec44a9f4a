/**
 * Services that scale themselves: the controller that decides, once a second, whether a node
 * adds a unit of capacity (a handler thread, or a child worker process) or retires one, from
 * the queue wait its services' jobs had and from how busy its units were.
 *
 * ## The rule
 *
 * Every tick (one second) the controller gets each driving service's queue-wait p99 of that
 * second (NaN when the second saw no job) and the mean number of jobs the units held.
 *
 * - **Up** when some driving service's p99 was above its target in each of the last two
 *   seconds and did not fall by more than 10 % from the first to the second (a queue that
 *   drains needs no more capacity: it is the backlog of a change just made; 10 % is the
 *   noise of a p99 on a plateau); the size is below that
 *   service's `max` and the policy's; no unit is still starting; and both seconds began
 *   after the last change (`upCooldownMs`, default 2 000).
 * - **Down** when over the last `idleMs` (default 10 000): every driving service's p99 stayed
 *   at or below half its target (or it saw no job), and the units held on average at most
 *   half of what one unit fewer would hold (`mean busy ≤ ½ × (size − 1) × unit slots`); the
 *   size is above `min`; no unit is starting; and no change happened in that time.
 * - Otherwise **hold** (a shrink the target could not finish yet is called off).
 *
 * One unit at a time, both ways: growth reacts within about two seconds of a load step, and
 * shrinking waits for ten quiet seconds, so a change is never undone by the next tick. The
 * controller counts sizes only through {@linkcode ScaleTarget}; a size that changed by itself
 * (a shrink the target finished later) restarts the windows too.
 *
 * {@linkcode Autoscaler} is the rule alone, on an injected clock (tests drive it step by
 * step); {@linkcode AutoscaleLoop} runs it on timers: it samples how busy the units are ten
 * times a second, and collects the queue waits that the node observes
 * ({@linkcode WaitWindow}).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { QuantileWindow } from "../observe/quantile_window.ts";

const log = getLogger(["ep", "autoscale"]);

/** What the controller scales: handler threads, or child worker processes. */
export interface ScaleTarget {
  /** Units now: serving and starting, not those retiring. */
  readonly size: number;
  /** Units added and not serving yet. */
  readonly starting: number;
  /** Jobs one unit runs at once. */
  readonly unitSlots: number;
  /** Jobs the units hold now (sampled for the idle rule). */
  readonly busy: number;
  /** Adds a unit. */
  grow(reason: string): void;
  /**
   * Retires a unit, now or as soon as it can (a module worker waits until the credit it
   * granted fits the smaller size: SPEC.md §9.5); asked again on every tick while it waits.
   */
  shrink(reason: string): void;
  /** Calls off a shrink that could not finish yet. */
  cancelShrink?(): void;
}

/** A service that drives scaling: its queue-wait target and the most units it may ask for. */
export interface ServiceTarget {
  /** Queue-wait p99 target, ms. */
  waitMs: number;
  /** Most units this service's waits may grow the target to. */
  max: number;
}

/** Bounds and targets of one controller. */
export interface ScalePolicy {
  /** Fewest units. */
  min: number;
  /** Most units. */
  max: number;
  /** The target of a service, or undefined when its waits do not drive scaling. */
  target(service: string): ServiceTarget | undefined;
  /** Time after a change before the next growth. Default 2 000 ms. */
  upCooldownMs?: number;
  /** Quiet time before a unit is retired, and after any change. Default 10 000 ms. */
  idleMs?: number;
}

/** One tick's measurements. */
export interface ScaleInput {
  /** Each service's queue-wait p99 over the tick's second, ms (NaN: no job). */
  waits: ReadonlyMap<string, number>;
  /** The mean number of jobs the units held over the tick's second. */
  busy: number;
}

/** What the controller decided at a tick, and why. */
export interface ScaleDecision {
  action: "up" | "down" | "hold";
  /** Why, in a few words (shown on the status page with the change). */
  reason: string;
}

const TICK_MS = 1_000;
/** A p99 below this share of the second before is falling. */
const FALLING = 0.9;

/**
 * The rule (see the module doc) over a target, on an injected clock.
 *
 * @example
 * ```ts
 * import { Autoscaler, type ScaleTarget } from "./autoscaler.ts";
 * let t = 0;
 * let threads = 1;
 * const target: ScaleTarget = {
 *   get size() { return threads; }, starting: 0, unitSlots: 1, busy: 0,
 *   grow() { threads++; }, shrink() { threads--; },
 * };
 * const scaler = new Autoscaler(target, {
 *   min: 1, max: 4, target: () => ({ waitMs: 50, max: 4 }),
 * }, () => t);
 * t += 2_000; scaler.step({ waits: new Map([["svc", 80]]), busy: 1 });
 * t += 1_000;
 * const d = scaler.step({ waits: new Map([["svc", 90]]), busy: 1 });
 * console.assert(d.action === "up" && target.size === 2);
 * ```
 */
export class Autoscaler {
  readonly #target: ScaleTarget;
  readonly #policy: ScalePolicy;
  readonly #now: () => number;
  readonly #upCooldown: number;
  readonly #idle: number;
  readonly #keep: number;
  /** Per driving service: its last per-second p99s, oldest first. */
  readonly #waits = new Map<string, number[]>();
  /** Mean busy per second, oldest first. */
  readonly #busy: number[] = [];
  #lastSize: number;
  #lastChange: number;
  #shrinking = false;

  /** A controller of `target`; `now` is its clock in ms (default `performance.now()`). */
  constructor(
    target: ScaleTarget,
    policy: ScalePolicy,
    now: () => number = () => performance.now(),
  ) {
    if (!(Number.isInteger(policy.min) && policy.min >= 1 && policy.max >= policy.min)) {
      throw new RangeError(`Scale bounds must be 1 <= min <= max: "${policy.min}–${policy.max}"`);
    }
    this.#target = target;
    this.#policy = policy;
    this.#now = now;
    this.#upCooldown = policy.upCooldownMs ?? 2 * TICK_MS;
    this.#idle = policy.idleMs ?? 10 * TICK_MS;
    this.#keep = Math.max(2, Math.ceil(this.#idle / TICK_MS));
    this.#lastSize = target.size;
    this.#lastChange = now();
  }

  /** One tick: records the second's measurements, decides, and acts on the target. */
  step(input: ScaleInput): ScaleDecision {
    const now = this.#now();
    const t = this.#target;
    if (t.size !== this.#lastSize) {
      this.#lastSize = t.size;
      this.#lastChange = now;
      this.#shrinking = false;
    }
    this.#record(input);
    const up = this.#upReason(now);
    if (up !== null) {
      this.#cancelShrink();
      t.grow(up);
      this.#changed(now);
      log.info("Scaling up to {size}: {reason}", { size: t.size, reason: up });
      return { action: "up", reason: up };
    }
    const down = this.#downReason(now);
    if (down !== null) {
      this.#shrinking = true;
      t.shrink(down);
      if (t.size !== this.#lastSize) {
        this.#changed(now);
        log.info("Scaling down to {size}: {reason}", { size: t.size, reason: down });
      }
      return { action: "down", reason: down };
    }
    this.#cancelShrink();
    return { action: "hold", reason: "" };
  }

  #record(input: ScaleInput): void {
    for (const service of input.waits.keys()) {
      if (this.#policy.target(service) !== undefined && !this.#waits.has(service)) {
        this.#waits.set(service, []);
      }
    }
    for (const [service, values] of this.#waits) {
      values.push(input.waits.get(service) ?? NaN);
      if (values.length > this.#keep) values.shift();
    }
    this.#busy.push(input.busy);
    if (this.#busy.length > this.#keep) this.#busy.shift();
  }

  #upReason(now: number): string | null {
    const t = this.#target;
    if (t.starting > 0 || t.size >= this.#policy.max) return null;
    if (now - this.#lastChange < this.#upCooldown) return null;
    for (const [service, values] of this.#waits) {
      const goal = this.#policy.target(service);
      if (goal === undefined || t.size >= goal.max || values.length < 2) continue;
      const w0 = values[values.length - 2];
      const w1 = values[values.length - 1];
      // NaN compares false: a second without jobs is not a second above target.
      if (w0 > goal.waitMs && w1 > goal.waitMs && w1 >= FALLING * w0) {
        return `wait p99 ${fmt(w1)} ms > ${fmt(goal.waitMs)} ms (${service})`;
      }
    }
    return null;
  }

  #downReason(now: number): string | null {
    const t = this.#target;
    if (t.starting > 0 || t.size <= this.#policy.min) return null;
    if (now - this.#lastChange < this.#idle || this.#busy.length < this.#keep) return null;
    for (const [service, values] of this.#waits) {
      const goal = this.#policy.target(service);
      if (goal === undefined) continue;
      for (const w of values) if (w > goal.waitMs / 2) return null;
    }
    const mean = this.#busy.reduce((a, b) => a + b, 0) / this.#busy.length;
    if (mean > 0.5 * (t.size - 1) * t.unitSlots) return null;
    return `idle: ${fmt(mean)} of ${t.size * t.unitSlots} slots busy`;
  }

  #changed(now: number): void {
    this.#lastSize = this.#target.size;
    this.#lastChange = now;
    this.#shrinking = false;
  }

  #cancelShrink(): void {
    if (!this.#shrinking) return;
    this.#shrinking = false;
    this.#target.cancelShrink?.();
  }
}

function fmt(ms: number): string {
  return ms >= 100 ? String(Math.round(ms)) : String(Math.round(ms * 10) / 10);
}

/**
 * Queue waits by service, one second at a time: {@linkcode WaitWindow.observe} each job's
 * wait, {@linkcode WaitWindow.tick} once a second for each service's p99 of that second
 * (log-scale buckets, ±5 %).
 *
 * @example
 * ```ts
 * import { WaitWindow } from "./autoscaler.ts";
 * const w = new WaitWindow();
 * for (let i = 1; i <= 100; i++) w.observe("svc", i);
 * const p99 = w.tick().get("svc")!;
 * console.assert(p99 > 94 && p99 < 105);
 * ```
 */
export class WaitWindow {
  readonly #services = new Map<string, QuantileWindow>();
  readonly #accept: (service: string) => boolean;

  /** Keeps the services `accept` says yes to (default: every service). */
  constructor(accept: (service: string) => boolean = () => true) {
    this.#accept = accept;
  }

  /** One job's queue wait, ms (NaN is ignored). */
  observe(service: string, waitMs: number): void {
    if (!(waitMs >= 0)) return;
    let q = this.#services.get(service);
    if (q === undefined) {
      if (!this.#accept(service)) return;
      q = new QuantileWindow(5);
      this.#services.set(service, q);
    }
    q.observe(waitMs / 1000);
  }

  /** Ends the second: each service's p99 of it, ms (NaN: no job). */
  tick(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [service, q] of this.#services) out.set(service, q.tick(0.99) * 1000);
    return out;
  }
}

/** Options of {@linkcode AutoscaleLoop}. */
export interface AutoscaleLoopOptions {
  /** How often the units' busy count is sampled. Default 100 ms. */
  sampleMs?: number;
  /**
   * Where a tick's measurements come from instead of the loop's own {@linkcode WaitWindow}
   * and samples (a parent reading its children's reports).
   */
  input?: () => ScaleInput;
  /** Told of every decision other than hold. */
  onDecision?: (d: ScaleDecision) => void;
}

/**
 * Runs an {@linkcode Autoscaler} on timers (which do not keep the process alive): a tick a
 * second, busy samples ten times a second; the node feeds {@linkcode AutoscaleLoop.waits}.
 *
 * @example
 * ```ts ignore
 * const loop = new AutoscaleLoop(new Autoscaler(target, policy), target);
 * balancerObserver.job = (service, outcome, waitMs) => loop.waits.observe(service, waitMs);
 * loop.start();
 * ```
 */
export class AutoscaleLoop {
  /** The waits the node observes; read once a tick. */
  readonly waits: WaitWindow;
  readonly #scaler: Autoscaler;
  readonly #target: ScaleTarget;
  readonly #opts: AutoscaleLoopOptions;
  #sum = 0;
  #samples = 0;
  #tick: ReturnType<typeof setInterval> | undefined;
  #sample: ReturnType<typeof setInterval> | undefined;

  /** Runs `scaler` (of `target`); `accept` picks the services whose waits are kept. */
  constructor(
    scaler: Autoscaler,
    target: ScaleTarget,
    options: AutoscaleLoopOptions & { accept?: (service: string) => boolean } = {},
  ) {
    this.#scaler = scaler;
    this.#target = target;
    this.#opts = options;
    this.waits = new WaitWindow(options.accept);
  }

  /** Starts the timers. */
  start(): void {
    if (this.#tick !== undefined) return;
    this.#sample = setInterval(() => {
      this.#sum += this.#target.busy;
      this.#samples++;
    }, this.#opts.sampleMs ?? 100);
    this.#tick = setInterval(() => this.tick(), TICK_MS);
    Deno.unrefTimer(this.#sample);
    Deno.unrefTimer(this.#tick);
  }

  /** One tick now (the timer calls it every second). */
  tick(): ScaleDecision {
    const input = this.#opts.input?.() ?? {
      waits: this.waits.tick(),
      busy: this.#samples > 0 ? this.#sum / this.#samples : this.#target.busy,
    };
    this.#sum = 0;
    this.#samples = 0;
    let d: ScaleDecision;
    try {
      d = this.#scaler.step(input);
    } catch (err) {
      log.error("Autoscaler step failed: {error}", { error: err });
      return { action: "hold", reason: "" };
    }
    if (d.action !== "hold") this.#opts.onDecision?.(d);
    return d;
  }

  /** Stops the timers. */
  stop(): void {
    clearInterval(this.#tick);
    clearInterval(this.#sample);
    this.#tick = undefined;
    this.#sample = undefined;
  }
}
