import assert from "node:assert/strict";
import { refusal, sniff, SNIFF_MAX_BYTES, type SniffResult } from "./sniff.ts";

const enc = new TextEncoder();

/** Feeds `bytes` one byte at a time and returns the first decision that is not "more". */
function sniffBytewise(bytes: Uint8Array): { result: SniffResult; at: number } {
  for (let i = 1; i <= bytes.length; i++) {
    const r = sniff(bytes.subarray(0, i));
    if (r !== "more") return { result: r, at: i };
  }
  return { result: "more", at: bytes.length };
}

Deno.test("sniffer tells EP, HTTP, TLS and HTTP/2 apart from their first bytes", () => {
  const cases: [Uint8Array, SniffResult][] = [
    [new Uint8Array([0xeb, 0x45, 0x50, 0x01, 0, 0]), "ep"],
    [new Uint8Array([0xeb, 0x45, 0x50, 0x07]), "ep"],
    [enc.encode("GET / HTTP/1.1\r\n"), "http"],
    [enc.encode("POST /user/login HTTP/1.1\r\n"), "http"],
    [enc.encode("OPTIONS * HTTP/1.1\r\n"), "http"],
    [enc.encode("PRI /x HTTP/1.1\r\n"), "http"],
    [enc.encode("M-SEARCH * HTTP/1.1\r\n"), "http"],
    [enc.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "h2"],
    [new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00]), "tls"],
    [new Uint8Array([0xeb, 0x45, 0x51, 0x01]), "unknown"],
    // Version 0 is EP's to refuse with ERROR unsupported_version (SPEC.md §3).
    [new Uint8Array([0xeb, 0x45, 0x50, 0x00]), "ep"],
    [new Uint8Array([0x16, 0x02]), "unknown"],
    [enc.encode(" GET / HTTP/1.1"), "unknown"],
    [enc.encode("GET\t/"), "unknown"],
    [enc.encode("\r\nGET / HTTP/1.1"), "unknown"],
    [enc.encode("SSH-2.0-OpenSSH_9.2\r\n"), "unknown"],
    [enc.encode("A".repeat(SNIFF_MAX_BYTES + 5)), "unknown"],
    [new Uint8Array([0]), "unknown"],
  ];
  for (const [bytes, want] of cases) {
    assert.equal(sniff(bytes), want, `whole: ${JSON.stringify(new TextDecoder().decode(bytes))}`);
    assert.equal(sniffBytewise(bytes).result, want, "one byte at a time");
  }
});

Deno.test("sniffer asks for more bytes on every proper prefix and decides within its bound", () => {
  assert.equal(sniff(new Uint8Array(0)), "more");
  for (const s of ["G", "GE", "GET", "PRI", "PRI *", "PRI * HTTP/2"]) {
    const r = sniff(enc.encode(s));
    assert.equal(r, s === "PRI * HTTP/2" ? "h2" : "more", s);
  }
  assert.equal(sniff(new Uint8Array([0xeb])), "more");
  assert.equal(sniff(new Uint8Array([0xeb, 0x45, 0x50])), "more");
  assert.equal(sniff(new Uint8Array([0x16])), "more");
  // A method token exactly at the maximum length still decides within SNIFF_MAX_BYTES.
  const longest = enc.encode("X".repeat(SNIFF_MAX_BYTES - 1) + " / HTTP/1.1");
  const { result, at } = sniffBytewise(longest);
  assert.equal(result, "http");
  assert.equal(at, SNIFF_MAX_BYTES);
});

Deno.test("sniffer never needs more than SNIFF_MAX_BYTES on random input", () => {
  let seed = 0x5eed;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 16;
  };
  const alphabet = enc.encode("GETPOSTPRI *HTTP/2.0\r\n ");
  for (let i = 0; i < 20000; i++) {
    const len = 1 + (rand() % 40);
    const bytes = new Uint8Array(len);
    for (let j = 0; j < len; j++) {
      bytes[j] = i % 2 ? alphabet[rand() % alphabet.length] : rand() & 0xff;
    }
    const { result, at } = sniffBytewise(bytes);
    if (result === "more") assert.ok(len < SNIFF_MAX_BYTES, `undecided after ${len} bytes`);
    else assert.ok(at <= SNIFF_MAX_BYTES);
  }
});

Deno.test("refusals are a TLS alert and an HTTP/2 GOAWAY(HTTP_1_1_REQUIRED)", () => {
  assert.deepEqual([...refusal("tls")], [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28]);
  const h2 = refusal("h2");
  assert.equal(h2[3], 0x04); // SETTINGS
  assert.equal(h2[12], 0x07); // GOAWAY
  assert.equal(h2[h2.length - 1], 0x0d); // HTTP_1_1_REQUIRED
  assert.equal(refusal("unknown").length, 0);
});
