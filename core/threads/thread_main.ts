/**
 * Private: the Web Worker entry of a handler thread. It imports the handler runtime module
 * the pool was given, builds the runtime with its context (the interrupt slot, `call`,
 * `block`), and runs the thread's loop (`_handler_thread.ts`) until told to stop.
 *
 * - `self.close()` and `Deno.exit()` are observed (a wrapped `close`, the `unload`
 *   event): the thread marks itself EXITED, tells the main thread and rings its doorbell.
 *   An uncaught error ends the Web Worker; the main thread sees the `error` event.
 * - A runtime module that fails to load or to build its runtime: `init-error`, then close.
 * - The loop's end (a STOP record, `_handler_thread.ts`): post `stopped`, close.
 *
 * @module
 */

import { requestLowLatency } from "./latency_hints.ts";
import { Doorbell } from "./doorbell.ts";
import { HandlerThread } from "./_handler_thread.ts";
import {
  CTL_INTERRUPT,
  CTL_STATE,
  MAIN_BELL_OFFSET,
  STATE_EXITED,
  STATE_RUNNING,
  STATE_STOPPED,
  type ThreadInit,
  type ThreadMessage,
} from "./_pool_protocol.ts";
import type { HandlerRuntime, HandlerRuntimeModule } from "./runtime.ts";

interface ThreadScope {
  onmessage: ((e: MessageEvent<ThreadInit>) => void) | null;
  postMessage(message: ThreadMessage): void;
  close(): void;
  addEventListener(type: "unload", listener: () => void): void;
}

const scope = globalThis as unknown as ThreadScope;

scope.onmessage = async (e: MessageEvent<ThreadInit>) => {
  const init = e.data;
  if (init?.type !== "init") return;
  scope.onmessage = null;
  // Its wake-ups (a job pushed, a sleep over) are on every job's path: ask for a small
  // timer slack (and a short slice, when configured; latency_hints.ts).
  requestLowLatency();
  const ctl = new Int32Array(init.control);
  const mainBell = new Doorbell(init.poolControl, MAIN_BELL_OFFSET);
  let stopped = false;
  let exitReported = false;
  const reportExit = (reason: string) => {
    if (stopped || exitReported) return;
    exitReported = true;
    Atomics.store(ctl, CTL_STATE, STATE_EXITED);
    scope.postMessage({ type: "exit", reason });
    mainBell.force();
  };
  const close = scope.close.bind(scope);
  scope.close = () => {
    reportExit("self.close() was called");
    close();
  };
  scope.addEventListener("unload", () => reportExit("the thread exited (Deno.exit)"));

  let runtime: HandlerRuntime;
  // Calls made while the runtime starts (a service file's top level) cannot be answered.
  let thread: HandlerThread | undefined = undefined;
  try {
    const mod = await import(init.module) as Partial<HandlerRuntimeModule>;
    if (typeof mod.createHandlerRuntime !== "function") {
      throw new TypeError(
        `Handler runtime module does not export createHandlerRuntime: "${init.module}"`,
      );
    }
    runtime = await mod.createHandlerRuntime({
      thread: init.thread,
      options: init.moduleOptions,
      interrupt: new Int32Array(init.control, CTL_INTERRUPT * 4, 1),
      call: init.calls ? (request, done) => thread!.call(request, done) : undefined,
      block: (until) => thread?.block(until) ?? false,
    });
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    stopped = true;
    scope.postMessage({ type: "init-error", message: error.message, stack: error.stack });
    close();
    return;
  }
  thread = new HandlerThread(init, runtime, ctl, mainBell);
  Atomics.store(ctl, CTL_STATE, STATE_RUNNING);
  scope.postMessage({ type: "ready", services: [...runtime.services] });
  await thread.run();
  stopped = true;
  Atomics.store(ctl, CTL_STATE, STATE_STOPPED);
  scope.postMessage({ type: "stopped" });
  close();
};
