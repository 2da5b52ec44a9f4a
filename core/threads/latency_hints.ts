/**
 * Latency hints to Linux for the calling thread, asked for by every thread on a job's path
 * (the main thread of `ep` processes, each handler thread):
 *
 * - A small timer slack (`prctl(PR_SET_TIMERSLACK)`), so that a timed futex wait (a handler
 *   thread's `ep.sleep`, `ep.timer`) is not pushed back by the default 50 µs: a 2 ms
 *   timed wait woke 96 µs late at the median with the default slack, 49 µs with 1 µs.
 *   On by default (`EP_TIMER_SLACK_NS`, default 1000; `0` leaves the kernel's).
 * - Opt-in, a short scheduler slice (`sched_setattr` with `sched_runtime`: EEVDF's custom
 *   slice, Linux 6.12 and later), so that when the thread wakes (a socket became readable,
 *   a job was pushed to its ring, its sleep is over) it runs before a thread that is merely
 *   computing, instead of queueing behind it for the rest of that thread's slice
 *   (`EP_SCHED_SLICE_US`, default 0: the kernel's, see {@linkcode DEFAULT_SLICE_US}).
 *
 * Why: on a busy machine every hop of a job (balancer → worker's main thread → handler
 * thread → back) is a thread wake-up, and each waits for a core. With the default slice
 * (1.4 ms on 2 cores) the p99 of each hop was 1–3 ms at the const-50 benchmark
 * (`tests/bench/compare.ts`), which is most of ep-lua's tail. Neither hint needs a
 * privilege: the thread's policy and nice value are kept. Does nothing (and never throws)
 * off Linux, without `--allow-ffi`, or under a real-time policy; kernels before 6.12
 * accept the slice and ignore it.
 *
 * @example
 * ```ts
 * import { requestLowLatency } from "./latency_hints.ts";
 * const { slice, slack } = requestLowLatency({ sliceUs: 0, slackNs: 0 });
 * console.assert(slice === "off" && slack === "off");
 * ```
 *
 * @module
 */

/**
 * Default slice asked for, µs: none. 100 µs cut each hop's p99 at const-50 by about half,
 * but cost 6–10 % of forwarding throughput at saturation (more preemptions), so it is
 * opt-in (`EP_SCHED_SLICE_US=100`) for deployments that want the tail more.
 */
export const DEFAULT_SLICE_US = 0;
/** Default timer slack asked for, ns. */
export const DEFAULT_SLACK_NS = 1000;

// x86_64 and aarch64 syscall numbers.
const SYSCALLS: Record<string, { get: bigint; set: bigint }> = {
  x86_64: { get: 315n, set: 314n },
  aarch64: { get: 275n, set: 274n },
};
const ATTR_SIZE = 56; // struct sched_attr, SCHED_ATTR_SIZE_VER1
const SCHED_OTHER = 0;
const SCHED_BATCH = 3;
const PR_SET_TIMERSLACK = 29n;

/**
 * What a hint came to: `set`, `off` (none asked for), or why not (`unsupported`: not Linux
 * x86_64/aarch64, or no FFI permission; `failed`: the kernel refused; `policy`: the thread
 * runs under a policy other than normal or batch, whose slice is not the kernel's to
 * shorten here).
 */
export type HintResult = "set" | "off" | "unsupported" | "failed" | "policy";

/** Options of {@linkcode requestLowLatency}; each defaults to its environment variable. */
export interface LatencyHintOptions {
  /** Scheduler slice, µs (`EP_SCHED_SLICE_US`, default 0); 0: leave it. */
  sliceUs?: number;
  /** Timer slack, ns (`EP_TIMER_SLACK_NS`, default 1000); 0: leave it. */
  slackNs?: number;
}

/** Asks for a small timer slack (and, when configured, a short slice) for the calling thread. */
export function requestLowLatency(
  options: LatencyHintOptions = {},
): { slice: HintResult; slack: HintResult } {
  const sliceUs = options.sliceUs ?? envNumber("EP_SCHED_SLICE_US", DEFAULT_SLICE_US);
  const slackNs = options.slackNs ?? envNumber("EP_TIMER_SLACK_NS", DEFAULT_SLACK_NS);
  const none = {
    slice: sliceUs > 0 ? "unsupported" : "off",
    slack: slackNs > 0 ? "unsupported" : "off",
  } as const;
  if (!(sliceUs > 0) && !(slackNs > 0)) return none;
  const nr = SYSCALLS[Deno.build.arch];
  if (Deno.build.os !== "linux" || nr === undefined) return none;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return none;
    const lib = Deno.dlopen("libc.so.6", {
      syscall: { parameters: ["i64", "i64", "pointer", "i64", "i64"], result: "i64" },
      prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
    });
    try {
      return {
        slice: sliceUs > 0 ? setSlice(lib.symbols.syscall, nr, sliceUs) : "off",
        slack: slackNs > 0
          ? lib.symbols.prctl(
              Number(PR_SET_TIMERSLACK),
              BigInt(Math.round(slackNs)),
              0n,
              0n,
              0n,
            ) ===
              0
            ? "set"
            : "failed"
          : "off",
      };
    } finally {
      lib.close();
    }
  } catch {
    return none;
  }
}

type Syscall = (nr: bigint, a: bigint, p: Deno.PointerValue, b: bigint, c: bigint) => bigint;

function setSlice(syscall: Syscall, nr: { get: bigint; set: bigint }, us: number): HintResult {
  const attr = new Uint8Array(ATTR_SIZE);
  const view = new DataView(attr.buffer);
  const ptr = Deno.UnsafePointer.of(attr);
  // sched_getattr(0, attr, size, 0) first: the thread's policy and nice value are kept.
  if (syscall(nr.get, 0n, ptr, BigInt(ATTR_SIZE), 0n) !== 0n) return "failed";
  const policy = view.getUint32(4, true);
  if (policy !== SCHED_OTHER && policy !== SCHED_BATCH) return "policy";
  view.setUint32(0, ATTR_SIZE, true);
  view.setBigUint64(8, 0n, true); // sched_flags: none (no reset-on-fork, no util clamps)
  view.setBigUint64(24, BigInt(Math.round(Math.min(us, 100_000) * 1000)), true);
  return syscall(nr.set, 0n, ptr, 0n, 0n) === 0n ? "set" : "failed";
}

function envNumber(name: string, fallback: number): number {
  let raw: string | undefined;
  try {
    // Never prompt: without the permission, the default.
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return fallback;
    }
    raw = Deno.env.get(name);
  } catch {
    return fallback;
  }
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}
