/**
 * Network-namespace helpers for multi-host tests: separate "hosts" made with `ip netns`,
 * each with one veth interface plugged into a bridge that lives in a namespace of its own,
 * addresses from a private /24 that exists only inside those namespaces. Links are cut with
 * `ip link set … down` on the bridge side (the host sees no FIN, no RST: its packets just
 * vanish) and restored with `up`.
 *
 * Needs root (or CAP_NET_ADMIN) and Debian's `iproute2`; {@linkcode netnsUnavailable} says
 * why not when it cannot work here, so that a test can skip with that reason.
 *
 * @module
 */

import { MOD, OutputProc } from "./_cluster.ts";

const dec = new TextDecoder();

/** Runs `ip` with `args`; returns its exit status and stderr. */
export async function ip(args: string[]): Promise<{ ok: boolean; stderr: string }> {
  try {
    const out = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
    return { ok: out.success, stderr: dec.decode(out.stderr).trim() };
  } catch (err) {
    return { ok: false, stderr: (err as Error).message };
  }
}

async function must(args: string[]): Promise<void> {
  const r = await ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

/** Why namespaces cannot be used here, or null when they can (creates and deletes one). */
export async function netnsUnavailable(): Promise<string | null> {
  const probe = `epprobe${crypto.randomUUID().slice(0, 8)}`;
  const r = await ip(["netns", "add", probe]);
  if (!r.ok) {
    return `cannot create a network namespace (${
      r.stderr || "no ip command"
    }): needs root and iproute2`;
  }
  await ip(["netns", "del", probe]);
  return null;
}

/** One host of a {@linkcode Topology}. */
export interface Host {
  /** Short name given by the test (`b1`, `w1`, …). */
  readonly name: string;
  /** Its network namespace. */
  readonly ns: string;
  /** Its IPv4 address. */
  readonly addr: string;
  /** The bridge-side end of its link (what {@linkcode Topology.cut} takes down). */
  readonly port: string;
}

/**
 * Hosts on one bridge. Everything lives in namespaces created here with a random suffix,
 * deleted by {@linkcode Topology.destroy}.
 */
export class Topology {
  readonly hosts: ReadonlyMap<string, Host>;
  readonly #bridgeNs: string;
  readonly #all: string[];

  private constructor(hosts: Map<string, Host>, bridgeNs: string, all: string[]) {
    this.hosts = hosts;
    this.#bridgeNs = bridgeNs;
    this.#all = all;
  }

  /**
   * Creates a bridge namespace and one namespace per host, `10.250.<subnet>.<n>/24`.
   * On failure, what was created is deleted before the error is thrown.
   */
  static async create(subnet: number, hosts: { name: string; n: number }[]): Promise<Topology> {
    const tag = crypto.randomUUID().replaceAll("-", "").slice(0, 6);
    const bridgeNs = `ep${tag}br`;
    const all = [bridgeNs];
    const map = new Map<string, Host>();
    try {
      await must(["netns", "add", bridgeNs]);
      await must(["-n", bridgeNs, "link", "add", "br0", "type", "bridge"]);
      await must(["-n", bridgeNs, "link", "set", "br0", "up"]);
      for (const { name, n } of hosts) {
        const ns = `ep${tag}${name}`;
        const port = `v${name}`;
        await must(["netns", "add", ns]);
        all.push(ns);
        await must([
          "link",
          "add",
          "eth0",
          "netns",
          ns,
          "type",
          "veth",
          "peer",
          "name",
          port,
          "netns",
          bridgeNs,
        ]);
        await must(["-n", bridgeNs, "link", "set", port, "master", "br0"]);
        await must(["-n", bridgeNs, "link", "set", port, "up"]);
        const addr = `10.250.${subnet}.${n}`;
        await must(["-n", ns, "addr", "add", `${addr}/24`, "dev", "eth0"]);
        await must(["-n", ns, "link", "set", "eth0", "up"]);
        await must(["-n", ns, "link", "set", "lo", "up"]);
        map.set(name, { name, ns, addr, port });
      }
    } catch (err) {
      for (const ns of all) await ip(["netns", "del", ns]);
      throw err;
    }
    return new Topology(map, bridgeNs, all);
  }

  /** The host named `name`. */
  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new RangeError(`No host "${name}"`);
    return h;
  }

  /** Cuts a host's link on the bridge side: no FIN, no RST, its packets are dropped. */
  cut(name: string): Promise<void> {
    return must(["-n", this.#bridgeNs, "link", "set", this.host(name).port, "down"]);
  }

  /** Restores a host's link. */
  restore(name: string): Promise<void> {
    return must(["-n", this.#bridgeNs, "link", "set", this.host(name).port, "up"]);
  }

  /** Deletes every namespace (kill the processes inside first). */
  async destroy(): Promise<void> {
    for (const ns of this.#all) await ip(["netns", "del", ns]);
  }
}

/** A process run inside a host's namespace (`ip netns exec NS deno run -A …`). */
export class NsProc extends OutputProc {
  /** Runs `deno run -A <script> ...args` in `host`'s namespace; `script` defaults to mod.ts. */
  constructor(host: Host, args: string[], options: { script?: string } = {}) {
    super(
      "ip",
      ["netns", "exec", host.ns, Deno.execPath(), "run", "-A", options.script ?? MOD, ...args],
      {},
      15_000,
    );
  }
}
