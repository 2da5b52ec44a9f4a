/**
 * How a provider's name reads in the status data. The EP port names a remote worker
 * `worker <address>` or `worker <address> (<label>)`, the label being the peer's HELLO
 * name (any characters); a local provider has a name of its own (`local pool`).
 *
 * @module
 */

/** `worker 10.0.0.5:40412 (name)` → `10.0.0.5:40412 (name)`; `local pool` stays. */
export function workerLabel(provider: string): string {
  return provider.startsWith("worker ") ? provider.slice(7) : provider;
}

/**
 * A provider's address and label. `remote` is what the provider is (an EP worker, attached
 * through the port's worker host); the name is only read for the address and the peer's
 * label, which may hold any character (a HELLO name with newlines stays one label).
 */
export function parseProviderName(
  name: string,
  remote: boolean,
): { address: string; label: string | null; kind: "remote" | "local" } {
  const m = /^worker (\S+)(?: \((.*)\))?$/s.exec(name);
  if (m && remote) return { address: m[1], label: m[2] ?? null, kind: "remote" };
  if (remote) return { address: name, label: null, kind: "remote" };
  return { address: "local", label: name, kind: "local" };
}
