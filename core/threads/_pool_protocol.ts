/**
 * Private: what the pool's main thread and its handler threads agree on. Message kinds in
 * the rings, the thread control words, and the postMessage envelope used only for
 * lifecycle (start, ready, exit).
 *
 * ## Job ring (main → thread), one record per message
 *
 * ```
 * KIND        AUX            ID       META         BODY
 * JOB         service index  ticket   job meta     job body
 * STOP        0              0        -            -          finish in-flight jobs and exit
 * CALL_REPLY  status         call id  reply meta   reply body   the answer to a CALL
 * CALL_ERROR  EP error code  call id  kind name    message (UTF-8)
 * CANCEL      0              ticket   -            -            the job's client went away
 * ```
 *
 * ## Reply ring (thread → main)
 *
 * ```
 * KIND       AUX       ID      META            BODY
 * REPLY      status    ticket  reply meta      reply body
 * ERROR      0         ticket  error name      message, NUL, stack
 * TOO_LARGE  0         ticket  -               reply size in decimal ASCII
 * CALL       0         call id `service`, `timeout`, [`upstream`], call meta   request body
 * ```
 *
 * A CALL is a handler's `ep.call`: the main thread carries it out (its own balancer, or
 * the balancers it pulls from, or a named upstream) and answers with CALL_REPLY or
 * CALL_ERROR carrying the same call id (the thread's own numbering). Calls go through
 * the main thread because it owns the sockets; the thread waits for the answer in its ring
 * like for a job, so a waiting call costs nothing.
 *
 * A CANCEL names a job written to the ring earlier (`HandlerPool.cancel`; the main thread
 * answered it `cancelled` already, and its slot stays taken until the thread lets go of the
 * job). A job still waiting on the thread is answered at once without running; a running
 * one is handed to the runtime's `cancel` (the TypeScript runtime aborts its
 * `AbortSignal`), which may ignore it. A CANCEL for a ticket the thread no longer holds is
 * ignored: it can cross the job's reply.
 *
 * A ticket is `generation << 16 | slot`: the slot indexes the main thread's per-thread job
 * table (so a reply finds its job by array index), the generation (1..32767) tells a stale
 * ticket from a live one. Tickets are positive Int32 values.
 *
 * ## Thread control (`Int32Array` over a 64-byte SharedArrayBuffer per thread)
 *
 * ```
 * index  name         written by  meaning
 * 0      INTERRUPT    main        0 = none, -1 = interrupt whatever runs, else a ticket
 * 1      STATE        thread      STARTING, RUNNING, EXITED (crash/close), STOPPED
 * 2      ASYNC        thread      async jobs in flight on the thread
 * 3      DONE         thread      jobs finished (u32, wraps)
 * 4      SLEEPS       thread      times the thread slept waiting for jobs
 * ```
 *
 * The pool control buffer holds the main thread's doorbell at offset 0: every reply ring
 * rings it, so the main thread sleeps on one word for all threads.
 *
 * @module
 */

/** Job ring kind: a job. */
export const KIND_JOB = 1;
/** Job ring kind: finish and exit. */
export const KIND_STOP = 2;
/** Reply ring kind: a handler's reply. */
export const KIND_REPLY = 16;
/** Reply ring kind: a handler threw or rejected. */
export const KIND_ERROR = 17;
/** Reply ring kind: the reply did not fit in the ring. */
export const KIND_TOO_LARGE = 18;
/** Reply ring kind: a handler calls a service (`ep.call`). */
export const KIND_CALL = 19;
/** Job ring kind: the answer to a CALL. */
export const KIND_CALL_REPLY = 3;
/** Job ring kind: a CALL failed. */
export const KIND_CALL_ERROR = 4;
/**
 * Job ring kind: the job with this ticket was cancelled (its client went away; aux 0), or
 * its deadline passed (aux {@linkcode CANCEL_DEADLINE}): one still waiting on the thread
 * ends at once without running; a running one is handed to the runtime's `cancel` (aux 0
 * only: at its deadline the runtime's own deadline and the interrupt flag act).
 */
export const KIND_CANCEL = 5;
/** KIND_CANCEL aux: the job's deadline passed. */
export const CANCEL_DEADLINE = 1;

/** Thread control word: interrupt request. */
export const CTL_INTERRUPT = 0;
/** Thread control word: state. */
export const CTL_STATE = 1;
/** Thread control word: async jobs in flight. */
export const CTL_ASYNC = 2;
/** Thread control word: jobs finished. */
export const CTL_DONE = 3;
/** Thread control word: sleeps. */
export const CTL_SLEEPS = 4;
/** Bytes of a thread control buffer. */
export const THREAD_CONTROL_BYTES = 64;

/** STATE: importing the runtime. */
export const STATE_STARTING = 0;
/** STATE: serving jobs. */
export const STATE_RUNNING = 1;
/** STATE: exited without being asked (crash, `self.close()`, `Deno.exit()`). */
export const STATE_EXITED = 2;
/** STATE: stopped on request. */
export const STATE_STOPPED = 3;

/** Bytes of the pool control buffer. */
export const POOL_CONTROL_BYTES = 64;
/** Byte offset of the main thread's doorbell in the pool control buffer. */
export const MAIN_BELL_OFFSET = 0;

/** main → thread, once: everything the thread needs. */
export interface ThreadInit {
  type: "init";
  thread: number;
  module: string;
  moduleOptions: unknown;
  jobRing: SharedArrayBuffer;
  replyRing: SharedArrayBuffer;
  control: SharedArrayBuffer;
  poolControl: SharedArrayBuffer;
  /** Float64 per slot: a job's deadline, `performance.timeOrigin + performance.now()` ms; 0 = none. */
  deadlines: SharedArrayBuffer;
  /** Jobs the thread runs at once; jobs beyond wait on the thread, in arrival order. */
  maxRunning: number;
  /** Whether handlers may call services (the pool has an `onCall`). */
  calls: boolean;
}

/** thread → main: lifecycle. */
export type ThreadMessage =
  | { type: "ready"; services: string[] }
  | { type: "init-error"; message: string; stack?: string }
  | { type: "exit"; reason: string }
  | { type: "stopped" };
