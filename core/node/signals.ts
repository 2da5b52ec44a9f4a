/**
 * What a running node does on each signal, the same for every way of running ep (`ep run`,
 * `ep start`, `ep balancer`, `ep worker`), so that a service manager (systemd, Docker,
 * Kubernetes) can rely on it:
 *
 * | signal           | effect                                                                |
 * | ---------------- | --------------------------------------------------------------------- |
 * | SIGTERM, SIGINT  | drain ({@linkcode Node.drain}): a balancer stops accepting, tells its clients to go elsewhere and answers what they sent, then tells its workers it is going away; a worker tells its balancers and finishes its jobs; then the process exits |
 * | the same again   | stop at once ({@linkcode Node.close})                                 |
 * | SIGHUP           | reload service code ({@linkcode Node.reload}); the process goes on   |
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Node } from "./node.ts";

const log = getLogger(["ep", "node"]);

/**
 * Runs until SIGINT or SIGTERM (or until `stopping` resolves, as `ep.exit` does), then
 * drains `node`; a second SIGINT or SIGTERM closes it at once. SIGHUP reloads its service
 * code meanwhile. Resolves once the node has stopped.
 *
 * @example
 * ```ts ignore
 * import { startNode } from "./node.ts";
 * import { untilStopped } from "./signals.ts";
 * await untilStopped(await startNode({ listen: { port: 7070 } }));
 * ```
 */
export async function untilStopped(
  node: Pick<Node, "drain" | "close" | "reload">,
  stopping?: Promise<unknown>,
): Promise<void> {
  let draining = false;
  let done!: () => void;
  const stopped = new Promise<void>((r) => done = r);
  const stop = () => {
    let step: Promise<void>;
    if (!draining) {
      draining = true;
      log.info("Draining: finishing the work in flight, then stopping (signal again to stop now)");
      step = node.drain();
    } else {
      log.warn("Stopping now, without waiting for the work in flight");
      step = node.close();
    }
    step.catch((err) => log.error("Stopping failed: {error}", { error: err })).finally(done);
  };
  const reload = () => {
    log.info("SIGHUP: reloading service code");
    node.reload().catch((err) => log.error("Reload failed: {error}", { error: err }));
  };
  const signals: [Deno.Signal, () => void][] = [
    ["SIGINT", stop],
    ["SIGTERM", stop],
    ["SIGHUP", reload],
  ];
  for (const [s, h] of signals) Deno.addSignalListener(s, h);
  stopping?.then(() => {
    if (!draining) stop();
  });
  try {
    await stopped;
  } finally {
    for (const [s, h] of signals) Deno.removeSignalListener(s, h);
  }
}
