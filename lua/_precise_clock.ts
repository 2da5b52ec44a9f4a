/**
 * Timers accurate to about 0.1 ms for `ep.sleep`, `ep.timer` and `ep.every`.
 *
 * Deno's `setTimeout` fires 0.2–1.4 ms late (measured on 2.9.6), so a single timeout
 * cannot place a 1 ms sleep. Here one `setTimeout` per deadline does the bulk, aimed
 * {@linkcode COARSE_LEAD_MS} early; the rest is waited out in short slices:
 * `Atomics.wait` on a private SharedArrayBuffer (no CPU, ≈ 0.1 ms late) for at most
 * {@linkcode SLICE_MS}, then a MessageChannel hop (≈ 12 µs) so the event loop can serve other
 * work between slices, and a spin for the last {@linkcode SPIN_MS}. Thus the thread is never
 * blocked for more than about 0.35 ms at a time, and never burns more than
 * {@linkcode SPIN_MS} of CPU per deadline. Many entries share one pending timeout.
 *
 * The channel exists only while deadlines are near, and the timeout only while entries
 * are pending, so an idle clock holds nothing that keeps a process alive.
 *
 * @module
 */

/** How early the coarse `setTimeout` aims before a deadline. */
export const COARSE_LEAD_MS = 2;
/** Longest `Atomics.wait` slice. */
export const SLICE_MS = 0.25;
/** Below this much time left, spin. */
export const SPIN_MS = 0.3;

/** A scheduled callback; pass it to {@linkcode PreciseClock.cancel}. */
export interface ClockEntry {
  /** `performance.now()` time it is due. */
  readonly deadline: number;
}

interface Entry extends ClockEntry {
  deadline: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A min-heap of deadlines served with sub-millisecond accuracy; see the module docs. */
export class PreciseClock {
  #heap: Entry[] = [];
  #live = 0;
  #seq = 0;
  #timeout: ReturnType<typeof setTimeout> | undefined;
  #timeoutFor = Infinity;
  #channel: MessageChannel | undefined;
  #hopPending = false;
  #cell = new Int32Array(new SharedArrayBuffer(4));
  #onError: (err: unknown) => void;
  #closed = false;

  /** `onError` receives what a callback throws. */
  constructor(onError: (err: unknown) => void) {
    this.#onError = onError;
  }

  /** Entries pending. */
  get size(): number {
    return this.#live;
  }

  /** Calls `fn` once `ms` milliseconds from now. */
  after(ms: number, fn: () => void): ClockEntry {
    return this.at(performance.now() + ms, fn);
  }

  /** Calls `fn` at `performance.now()` time `deadline` (at once, on a later turn, if past). */
  at(deadline: number, fn: () => void): ClockEntry {
    if (this.#closed) throw new TypeError("The clock is closed");
    const entry: Entry = { deadline, seq: this.#seq++, fn, cancelled: false };
    this.#push(entry);
    this.#live++;
    if (this.#heap[0] === entry) this.#arm();
    return entry;
  }

  /** Cancels an entry; harmless when it already ran or was cancelled. */
  cancel(entry: ClockEntry): void {
    const e = entry as Entry;
    if (e.cancelled) return;
    e.cancelled = true;
    e.fn = noop;
    this.#live--;
  }

  /** Cancels everything and releases the timeout and the channel. */
  close(): void {
    this.#closed = true;
    for (const e of this.#heap) e.cancelled = true;
    this.#heap = [];
    this.#live = 0;
    this.#disarm();
  }

  #arm(): void {
    this.#dropCancelled();
    const top = this.#heap[0];
    if (top === undefined || this.#closed) {
      this.#disarm();
      return;
    }
    const d = top.deadline - performance.now();
    if (d > COARSE_LEAD_MS + 1) {
      if (this.#timeout !== undefined && this.#timeoutFor === top.deadline) return;
      if (this.#timeout !== undefined) clearTimeout(this.#timeout);
      this.#timeoutFor = top.deadline;
      this.#timeout = setTimeout(this.#wake, Math.floor(d - COARSE_LEAD_MS));
    } else {
      if (this.#timeout !== undefined) {
        clearTimeout(this.#timeout);
        this.#timeout = undefined;
        this.#timeoutFor = Infinity;
      }
      this.#hop();
    }
  }

  #disarm(): void {
    if (this.#timeout !== undefined) clearTimeout(this.#timeout);
    this.#timeout = undefined;
    this.#timeoutFor = Infinity;
    if (this.#channel !== undefined) {
      this.#channel.port1.close();
      this.#channel.port2.close();
      this.#channel = undefined;
    }
    this.#hopPending = false;
  }

  #hop(): void {
    if (this.#hopPending) return;
    if (this.#channel === undefined) {
      this.#channel = new MessageChannel();
      this.#channel.port1.onmessage = this.#wake;
    }
    this.#hopPending = true;
    this.#channel.port2.postMessage(null);
  }

  #wake = (): void => {
    this.#timeout = undefined;
    this.#timeoutFor = Infinity;
    this.#hopPending = false;
    if (this.#closed) return;
    this.#dropCancelled();
    const top = this.#heap[0];
    if (top === undefined) {
      this.#disarm();
      return;
    }
    let left = top.deadline - performance.now();
    if (left > SPIN_MS && left <= COARSE_LEAD_MS + 1) {
      // Near: sleep one slice, then let the event loop run before looking again.
      Atomics.wait(this.#cell, 0, 0, Math.min(SLICE_MS, left - SPIN_MS));
      left = top.deadline - performance.now();
      if (left > SPIN_MS) {
        this.#hop();
        return;
      }
    }
    if (left > 0 && left <= SPIN_MS) {
      while (performance.now() < top.deadline) { /* spin for the last fraction */ }
    }
    this.#runDue();
    this.#arm();
  };

  #runDue(): void {
    const now = performance.now();
    while (this.#heap.length > 0 && this.#heap[0].deadline <= now) {
      const e = this.#pop();
      if (e.cancelled) continue;
      e.cancelled = true;
      this.#live--;
      try {
        e.fn();
      } catch (err) {
        this.#onError(err);
      }
    }
  }

  #dropCancelled(): void {
    while (this.#heap.length > 0 && this.#heap[0].cancelled) this.#pop();
  }

  #push(e: Entry): void {
    const h = this.#heap;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = e;
  }

  #pop(): Entry {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && before(h[r], h[l]) ? r : l;
        if (!before(h[c], last)) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);
}

function noop(): void {}
