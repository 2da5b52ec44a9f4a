/** Helpers shared by the integration tests: a test server and raw socket I/O. */
import { demoHandler } from "./_demo_handler.ts";
import type { Job, JobHandler, JobResult } from "../core/job.ts";
import { serve, type ServeOptions, type Server } from "../core/net/server.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

/** The demo services plus `sleep` (`?ms=N` or an EP body "N") and `big` (`?kb=N`). */
export function testHandler(): JobHandler {
  const demo = demoHandler();
  return (job: Job): JobResult | Promise<JobResult> => {
    if (job.service === "sleep") {
      const ms = Number(new URLSearchParams(job.query).get("ms") ?? dec.decode(job.body)) || 0;
      return new Promise((r) => setTimeout(() => r({ body: `slept ${ms}\n` }), ms));
    }
    if (job.service === "big") {
      const kb = Number(new URLSearchParams(job.query).get("kb") ?? 64);
      return { body: new Uint8Array(kb * 1024).fill(0x61) };
    }
    return demo(job);
  };
}

/** Starts a test server on a free loopback port. */
export function startServer(options: Partial<ServeOptions> = {}): Server & { url: string } {
  const server = serve({ port: 0, handler: testHandler(), ...options });
  return Object.assign(server, { url: `http://127.0.0.1:${server.addr.port}` });
}

/** A raw TCP connection for byte-exact tests. */
export class Raw {
  conn!: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #eof = false;

  static async open(port: number): Promise<Raw> {
    const r = new Raw();
    r.conn = await Deno.connect({ port, hostname: "127.0.0.1" });
    return r;
  }

  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** Reads until `pred` holds on the text received so far, EOF, or the timeout. */
  async readUntil(pred: (text: string) => boolean, timeoutMs = 3000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(dec.decode(this.#buf)) && !this.#eof) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const chunk = new Uint8Array(65536);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.conn.read(chunk).catch(() => null),
        new Promise<"t">((r) => timer = setTimeout(() => r("t"), left)),
      ]);
      clearTimeout(timer);
      if (n === "t") break;
      if (n === null) {
        this.#eof = true;
        break;
      }
      const joined = new Uint8Array(this.#buf.length + n);
      joined.set(this.#buf);
      joined.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = joined;
    }
    return dec.decode(this.#buf);
  }

  /** Reads until the server closes the connection (or the timeout). */
  async readToEnd(timeoutMs = 3000): Promise<{ text: string; eof: boolean }> {
    const text = await this.readUntil(() => false, timeoutMs);
    return { text, eof: this.#eof };
  }

  get bytes(): Uint8Array {
    return this.#buf;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** Counts complete HTTP responses (status lines) in a text. */
export function statusLines(text: string): string[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3}) [^\r\n]*\r\n/g)].map((m) => m[1]);
}
