/**
 * A sleep/wake point in shared memory, for a thread that waits for a condition another
 * thread makes true: the rings' DATA and SPACE doorbells (`ring.ts`) and the pool's main
 * thread doorbell, rung by every reply ring.
 *
 * A doorbell is two `Int32` words: FLAG (non-zero while someone sleeps or is about to) and
 * SEQ (the word slept on). A sleeper reads SEQ, stores FLAG, re-checks its condition and
 * only then waits on the SEQ it read; a waker publishes first, then, only if FLAG is set,
 * swaps it to 0, bumps SEQ and notifies. Both sides use sequentially consistent atomics, so
 * either the sleeper's re-check sees the publication or the waker sees the flag: no lost
 * wake-up, and no notify at all while nobody sleeps.
 *
 * A sleeper may arm *lazily* (FLAG = 2): it wants to be woken only by urgent rings, and will
 * look at what was published anyway when its wait ends. A handler thread whose slots all wait
 * on promises arms its job ring so: a job published then could not start, and waking the
 * thread's event loop for it is work for nothing; a cancel or a stop still wakes it, and the
 * thread wakes itself when a slot frees.
 *
 * @example
 * ```ts
 * import { Doorbell } from "./doorbell.ts";
 * const buffer = new SharedArrayBuffer(64);
 * const sleeper = new Doorbell(buffer, 0);
 * const seq = sleeper.arm(); // then re-check the condition: still false, so wait
 * new Doorbell(buffer, 0).ring(); // another thread made it true (here, the same thread)
 * console.assert(sleeper.waitSync(seq, 0) === "not-equal"); // rung before the wait: no sleep
 * ```
 *
 * @module
 */

/** What a wait ended with, as `Atomics.wait` reports it. */
export type WaitResult = "ok" | "not-equal" | "timed-out";

/**
 * A sleep/wake point in shared memory: two `Int32` words, FLAG then SEQ, at `byteOffset`.
 * One sleeper at a time; any number of wakers (the pool's main thread sleeps on one
 * doorbell rung by every reply ring).
 *
 * The sleeper's protocol: `const seq = bell.arm()`, re-check the condition (and
 * `bell.disarm()` if it holds), else `bell.waitSync(seq)` or `await bell.waitAsync(seq)`.
 * A waker publishes its data first and then calls {@linkcode Doorbell.ring}.
 *
 * @example
 * ```ts
 * import { Doorbell } from "./doorbell.ts";
 * const bell = new Doorbell(new SharedArrayBuffer(64), 0);
 * const seq = bell.arm();
 * console.assert(bell.ring() === true); // a sleeper was armed: notified
 * console.assert(bell.waitSync(seq, 0) === "not-equal"); // SEQ moved on: no sleep
 * console.assert(bell.ring() === false); // nobody armed: nothing to do
 * ```
 */
/** FLAG: nobody sleeps. */
const IDLE = 0;
/** FLAG: a sleeper wants every ring. */
const ARMED = 1;
/** FLAG: a sleeper wants only urgent rings ({@linkcode Doorbell.arm} with `lazy`). */
const ARMED_LAZY = 2;

export class Doorbell {
  readonly #i32: Int32Array;
  readonly #flag: number;
  readonly #seq: number;

  /** Uses the 8 bytes at `byteOffset` (a multiple of 4) of `buffer`. */
  constructor(buffer: SharedArrayBuffer, byteOffset: number) {
    this.#i32 = new Int32Array(buffer);
    this.#flag = byteOffset >> 2;
    this.#seq = this.#flag + 1;
  }

  /**
   * Announces a sleeper (`lazy`: one that only urgent rings wake, see the module
   * documentation); returns the SEQ value to pass to a wait. SEQ is read *before* the
   * flag is raised: a ring landing in between then moves SEQ past the returned value, and
   * the wait returns at once. (Read after, the sleeper could take the already-bumped SEQ
   * while the ring had cleared the flag, then sleep through every later ring: a partial
   * release that did not free enough space was enough to lose the producer's wake-up.)
   */
  arm(lazy = false): number {
    const seq = Atomics.load(this.#i32, this.#seq);
    Atomics.store(this.#i32, this.#flag, lazy ? ARMED_LAZY : ARMED);
    return seq;
  }

  /** Withdraws the announcement (the condition held after all, or the sleeper woke). */
  disarm(): void {
    Atomics.store(this.#i32, this.#flag, IDLE);
  }

  /** Whether a sleeper is armed. */
  get armed(): boolean {
    return Atomics.load(this.#i32, this.#flag) !== IDLE;
  }

  /**
   * Wakes the sleeper if one is armed (a lazy one only when `urgent`), and disarms it so
   * that later rings cost one load. Returns whether it notified.
   */
  ring(urgent = true): boolean {
    const flag = Atomics.load(this.#i32, this.#flag);
    if (flag === IDLE || (flag === ARMED_LAZY && !urgent)) return false;
    if (Atomics.exchange(this.#i32, this.#flag, IDLE) === IDLE) return false;
    Atomics.add(this.#i32, this.#seq, 1);
    Atomics.notify(this.#i32, this.#seq);
    return true;
  }

  /** Wakes any sleeper, armed or not (lifecycle events, shutdown). */
  force(): void {
    Atomics.store(this.#i32, this.#flag, IDLE);
    Atomics.add(this.#i32, this.#seq, 1);
    Atomics.notify(this.#i32, this.#seq);
  }

  /**
   * Blocks the calling thread until rung (or `timeoutMs` passes). Not allowed on the main
   * thread; use {@linkcode Doorbell.waitAsync} there.
   */
  waitSync(seq: number, timeoutMs = Infinity): WaitResult {
    return Atomics.wait(this.#i32, this.#seq, seq, timeoutMs);
  }

  /**
   * Waits without blocking the event loop. Returns `undefined` when SEQ already moved on
   * (no need to wait), else a promise settled when rung or after `timeoutMs`.
   *
   * Note: in Deno 2.9.6 a pending `Atomics.waitAsync` does not keep the process alive.
   */
  waitAsync(seq: number, timeoutMs = Infinity): Promise<"ok" | "timed-out"> | undefined {
    const r = Atomics.waitAsync(this.#i32, this.#seq, seq, timeoutMs);
    if (!r.async) return undefined;
    return r.value;
  }
}
