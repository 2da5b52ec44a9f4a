/**
 * The clock thread of the load generator: wakes the main thread at an intended send time
 * without spinning and without blocking its event loop. Deno's `setTimeout` alone fires
 * 1–1.5 ms late, too coarse for millisecond jobs.
 *
 * @module
 */

const CLOCK_SOURCE = `
self.onmessage = (e) => {
  const ctl = new Int32Array(e.data, 0, 4);
  const target = new Float64Array(e.data, 16, 1);
  let fired = 0;
  for (;;) {
    const s = Atomics.load(ctl, 0);
    if (s < 0) break;
    if (s === fired) { Atomics.wait(ctl, 0, s); continue; }
    const left = target[0] - (performance.timeOrigin + performance.now());
    if (left > 0) { Atomics.wait(ctl, 0, s, left); continue; }
    fired = s;
    Atomics.store(ctl, 1, s);
    Atomics.notify(ctl, 1);
  }
  self.close();
};
`;

/**
 * Wakes the main thread at a `performance.now()` time, to about 0.1 ms, without spinning
 * and without blocking the event loop: a Web Worker waits in `Atomics.wait` and rings the
 * main thread through `Atomics.waitAsync`. Falls back to `setTimeout` where workers are
 * unavailable.
 */
export class AlarmClock {
  #ctl: Int32Array | null = null;
  #target: Float64Array | null = null;
  #worker: Worker | null = null;
  #seq = 0;
  /** Whether the clock thread runs (false: the `setTimeout` fallback). */
  readonly precise: boolean;

  constructor() {
    try {
      const sab = new SharedArrayBuffer(32);
      const url = URL.createObjectURL(new Blob([CLOCK_SOURCE], { type: "text/javascript" }));
      this.#worker = new Worker(url, { type: "module" });
      URL.revokeObjectURL(url);
      this.#ctl = new Int32Array(sab, 0, 4);
      this.#target = new Float64Array(sab, 16, 1);
      this.#worker.postMessage(sab);
      this.precise = true;
    } catch {
      this.precise = false;
    }
  }

  /** Resolves at or after `t` (`performance.now()` time). */
  async waitUntil(t: number): Promise<void> {
    const ctl = this.#ctl;
    if (!ctl || !this.#target) {
      const left = t - performance.now();
      if (left > 0) await new Promise((r) => setTimeout(r, left));
      return;
    }
    const s = this.#seq = (this.#seq + 1) & 0x3fffffff;
    this.#target[0] = performance.timeOrigin + t;
    Atomics.store(ctl, 0, s);
    Atomics.notify(ctl, 0);
    while (Atomics.load(ctl, 1) !== s && performance.now() < t) {
      const r = Atomics.waitAsync(ctl, 1, Atomics.load(ctl, 1));
      if (!r.async) continue;
      // Deno resolves `waitAsync` only when its event loop turns (denoland/deno#15358): a
      // timer 2 ms past the target makes sure it turns, so a lost wake-up costs 2 ms, not a
      // stall (the send lag shows it).
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        r.value,
        new Promise((res) => timer = setTimeout(res, Math.max(0, t - performance.now()) + 2)),
      ]);
      clearTimeout(timer);
    }
  }

  /** Stops the clock thread. */
  close(): void {
    if (this.#ctl) {
      Atomics.store(this.#ctl, 0, -1);
      Atomics.notify(this.#ctl, 0);
    }
    this.#worker?.terminate();
    this.#worker = null;
  }
}
