/**
 * Private: how the pool's main thread collects replies. One scheduler watches every reply
 * ring of a pool while jobs are in flight:
 *
 * - After activity it checks once per event-loop turn (`setImmediate`: cheaper than a
 *   `MessageChannel` message, ≈ 2 against ≈ 5 µs, and sockets are served between checks,
 *   which a run of messages delays for milliseconds) for the pool's `pollMicros`.
 * - Then it sleeps on the main thread's doorbell, which every reply ring rings, in
 *   `Atomics.waitAsync`: arm, re-check every ring, only then wait, so no wake-up is lost.
 * - A drain takes up to `REPLY_BUDGET` replies from each ring per turn, starting one ring
 *   further at each call, so that a busy thread cannot starve the others, and at most
 *   `DRAIN_BUDGET` replies before it yields to the event loop.
 *
 * Cut from `pool.ts` because it is a loop of its own (when to look, when to sleep, in what
 * order to read) that knows nothing of slots or jobs: it hands each reply record to its
 * {@linkcode ReplySink}, which is the pool.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { Doorbell } from "./doorbell.ts";
import { type RingConsumer, RingRecord } from "./ring.ts";
import { MAIN_BELL_OFFSET } from "./_pool_protocol.ts";
import type { Thread } from "./_thread.ts";

const REPLY_BUDGET = 64; // replies taken from one ring before visiting the next
const DRAIN_BUDGET = 8192; // replies per scheduler turn before yielding to the event loop

/** What the scheduler asks of the pool. */
export interface ReplySink {
  /** Jobs holding a slot: the scheduler stops watching when none is left. */
  inFlight(): number;
  /** One reply read from `t`'s reply ring; the record is valid until the ring is released. */
  reply(t: Thread, replies: RingConsumer, rec: RingRecord): void;
  /** A drain took replies. */
  drained(): void;
}

/** Watches a pool's reply rings: polls, sleeps on the doorbell, drains fairly. */
export class ReplyScheduler {
  readonly #threads: readonly Thread[];
  readonly #bell: Doorbell;
  readonly #pollMs: number;
  readonly #sink: ReplySink;
  readonly #rec = new RingRecord();
  #closed = false;
  #drainStart = 0;
  #watching = false;
  #sleeping = false;
  #pollQueued = false;
  #lastActivity = 0;
  #active = false; // a job was submitted since the last poll
  #sleeps = 0;

  /**
   * Watches the reply rings of `threads` (the pool's array, read live), sleeping on the
   * doorbell in `poolControl` once quiet for `pollMs` milliseconds.
   */
  constructor(
    threads: readonly Thread[],
    poolControl: SharedArrayBuffer,
    pollMs: number,
    sink: ReplySink,
  ) {
    this.#threads = threads;
    this.#bell = new Doorbell(poolControl, MAIN_BELL_OFFSET);
    this.#pollMs = pollMs;
    this.#sink = sink;
  }

  /** Times the main thread slept in `Atomics.waitAsync` waiting for replies. */
  get sleeps(): number {
    return this.#sleeps;
  }

  /** Stops for good (the pool closed). */
  close(): void {
    this.#closed = true;
  }

  /** Starts watching for replies if jobs are in flight (call after each submission). */
  watch(): void {
    this.#active = true;
    if (this.#watching) return;
    this.#watching = true;
    this.#schedulePoll();
  }

  #schedulePoll(): void {
    if (this.#pollQueued) return;
    this.#pollQueued = true;
    setImmediate(this.#pollSoon);
  }

  /** The scheduled poll (none once closed, as a closed channel delivered none). */
  #pollSoon = (): void => {
    if (this.#closed) this.#pollQueued = false;
    else this.#poll();
  };

  #poll = (): void => {
    this.#pollQueued = false;
    if (this.#sleeping) return;
    const n = this.#drain();
    if (this.#sink.inFlight() === 0) {
      this.#watching = false;
      return;
    }
    const now = performance.now();
    if (n > 0 || this.#active) {
      this.#active = false;
      this.#lastActivity = now;
    }
    if (n > 0 || now - this.#lastActivity < this.#pollMs) {
      this.#schedulePoll();
      return;
    }
    // Quiet for pollMicros: sleep on the doorbell until a thread publishes a reply.
    const seq = this.#bell.arm();
    if (this.#anyReplies()) {
      this.#bell.disarm();
      this.#schedulePoll();
      return;
    }
    const wait = this.#bell.waitAsync(seq);
    if (wait === undefined) {
      this.#schedulePoll();
      return;
    }
    this.#sleeping = true;
    this.#sleeps++;
    wait.then(this.#woken);
  };

  #woken = (): void => {
    this.#sleeping = false;
    this.#bell.disarm();
    this.#lastActivity = performance.now();
    this.#poll();
  };

  #anyReplies(): boolean {
    for (const t of this.#threads) {
      if (t.webWorker !== null && t.replies.hasData()) return true;
    }
    return false;
  }

  /**
   * Drains the reply rings in turns: up to REPLY_BUDGET replies from each ring per turn,
   * so that a busy thread cannot starve the others. Each call starts one ring further.
   */
  #drain(): number {
    const threads = this.#threads;
    const n = threads.length;
    const rec = this.#rec;
    const start = this.#drainStart;
    this.#drainStart = start + 1 === n ? 0 : start + 1;
    let total = 0;
    while (total < DRAIN_BUDGET) {
      let got = 0;
      for (let k = 0; k < n; k++) {
        const t = threads[(start + k) % n];
        if (t.webWorker === null) continue;
        const replies = t.replies;
        let c = 0;
        while (c < REPLY_BUDGET && replies.read(rec)) {
          c++;
          this.#sink.reply(t, replies, rec);
          if (t.replies !== replies) break; // the thread was lost in a callback
        }
        if (c > 0) {
          replies.release();
          got += c;
        }
      }
      if (got === 0) break;
      total += got;
    }
    if (total > 0) this.#sink.drained();
    return total;
  }
}
