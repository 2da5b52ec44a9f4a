/**
 * Byte-exact HTTP over real sockets: what a client sends through the stock `echo` service
 * (in-process, all-in-one with Lua handler threads, and through a separate worker) comes
 * back byte for byte, and responses on a keep-alive connection parse as exactly as many
 * responses as were asked for (response splitting).
 */
import assert from "node:assert/strict";
import { Proc, waitStats } from "./_cluster.ts";
import { Raw, startServer } from "./_server_helpers.ts";
import { type HttpResponse, HttpResponseParser } from "../protocol/http_response_parser.ts";

const SCRIPTS = new URL("../scripts/", import.meta.url).pathname;

/** Runs a stock script (`ep run scripts/<name>`) that listens; returns its port. */
async function listening(
  name: string,
  env: Record<string, string> = {},
): Promise<{ proc: Proc; port: number; addr: string }> {
  const proc = new Proc(["run", SCRIPTS + name], { EP_PORT: "0", ...env });
  try {
    const m = await proc.waitFor(/listening on [^:]+:(\d+)/, 30_000);
    return { proc, port: Number(m[1]), addr: `127.0.0.1:${m[1]}` };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** A byte string (Latin-1) as bytes. */
function bytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

/** Bytes as a byte string (Latin-1). */
function latin1(b: Uint8Array): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return s;
}

/**
 * Parses `data` as the responses to `methods`, strictly (protocol/http_response_parser.ts):
 * a head overwritten by a body, or a body read as header fields, cannot pass. Returns the
 * complete responses (bodies as byte strings), an error message if the stream is broken,
 * and whether bytes of an unfinished response are left over.
 */
function responses(
  data: Uint8Array,
  methods = ["POST", "POST"],
): { got: (HttpResponse & { text: string })[]; error: string | null; partial: boolean } {
  const got: (HttpResponse & { text: string })[] = [];
  let error: string | null = null;
  const parser = new HttpResponseParser({
    response: (r) => got.push({ ...r, text: latin1(r.body) }),
    error: (e) => error = e.message,
  });
  for (const m of methods) parser.sent(m);
  parser.push(data);
  return { got, error, partial: !parser.idle };
}

const ATTACK_TYPE = "a\xe9\xe9\xe9"; // bytes 61 E9 E9 E9: Latin-1, not UTF-8
const ATTACK_BODY = "\nSet-Cookie: x\r\n\r\n";

/** Two echo requests on one keep-alive connection; checks both answers exactly. */
async function echoTwice(port: number): Promise<void> {
  const raw = await Raw.open(port);
  try {
    const req = (type: string, body: string) =>
      `POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: ${type}\r\n` +
      `Content-Length: ${body.length}\r\n\r\n${body}`;
    const second = "second \xff\x00 body";
    await raw.send(bytes(req(ATTACK_TYPE, ATTACK_BODY) + req("text/x\x80\xfe", second)));
    await raw.readUntil(() => {
      const r = responses(raw.bytes);
      return r.got.length === 2 || r.error !== null;
    }, 10_000);
    const { got, error, partial } = responses(raw.bytes);
    assert.equal(error, null, latin1(raw.bytes));
    assert.equal(got.length, 2, latin1(raw.bytes));
    assert.ok(!partial, "nothing left over");
    assert.deepEqual(got.map((r) => r.status), [200, 200]);
    for (const r of got) {
      assert.ok(!r.headers.some(([k]) => k === "set-cookie"), latin1(raw.bytes));
    }
    const type = (r: HttpResponse) => r.headers.find(([k]) => k === "content-type")?.[1];
    assert.equal(type(got[0]), ATTACK_TYPE);
    assert.equal(got[0].text, ATTACK_BODY);
    assert.equal(type(got[1]), "text/x\x80\xfe");
    assert.equal(got[1].text, second);
  } finally {
    raw.close();
  }
}

Deno.test("HTTP wire: echo returns a non-ASCII Content-Type byte for byte and a keep-alive connection's two responses parse exactly (in process)", async () => {
  const server = startServer();
  try {
    await echoTwice(server.addr.port);
  } finally {
    await server.close();
  }
});

Deno.test("HTTP wire: the stock Lua echo, all-in-one, cannot be made to split a response; a field name too long for a job is a 431", async () => {
  const p = await listening("main.lua", { EP_THREADS: "1" });
  try {
    await echoTwice(p.port);
    // Header fields named ep-… are ep's (SPEC.md §10): they cannot pose as the request line.
    const spoof = await Raw.open(p.port);
    try {
      await spoof.send(
        "GET /echo?real HTTP/1.1\r\nHost: h\r\nEP-Query: spoofed\r\nep-method: POST\r\n" +
          "ep-path: /other\r\nConnection: close\r\n\r\n",
      );
      assert.match((await spoof.readToEnd(10_000)).text, /\r\n\r\nreal$/);
    } finally {
      spoof.close();
    }
    // A field name longer than a job's metadata key can be (255 bytes) is the client's
    // fault, and said so; one of 255 bytes goes through.
    for (
      const [n, want] of [[255, /^HTTP\/1\.1 200 /], [
        256,
        /^HTTP\/1\.1 431 [^]*\r\n\r\nHeader field name "n+\.\.\." is longer than 255 bytes\n$/,
      ]] as const
    ) {
      const raw = await Raw.open(p.port);
      try {
        await raw.send(
          `GET /echo?x HTTP/1.1\r\nHost: h\r\n${"n".repeat(n)}: v\r\nConnection: close\r\n\r\n`,
        );
        const { text } = await raw.readToEnd(10_000);
        assert.match(text, want);
      } finally {
        raw.close();
      }
    }
  } finally {
    await p.proc.stop();
  }
});

Deno.test("HTTP wire: the stock Lua echo in a separate worker cannot be made to split a response", async () => {
  const b = await listening("balancer.lua");
  const w = new Proc(["run", SCRIPTS + "worker.lua"], { EP_CONNECT: b.addr, EP_THREADS: "1" });
  try {
    await waitStats(b.addr, (s) => s.providers.length === 1, 30_000);
    await echoTwice(b.port);
  } finally {
    await w.stop();
    await b.proc.stop();
  }
});

Deno.test("HTTP wire: a request with an invalid Host is answered 400 and the connection closed (RFC 9112 §3.2)", async () => {
  const server = startServer();
  try {
    for (const host of ["127.0.0.1:9000:80", "a:b:c", "[::1", "h:80x", "h@x", "a b", "\xe9"]) {
      const raw = await Raw.open(server.addr.port);
      try {
        await raw.send(bytes(`GET /echo?x HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
        const { text, eof } = await raw.readToEnd(5_000);
        assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/, JSON.stringify(host));
        assert.ok(text.endsWith("\r\n\r\nInvalid Host field\n") && eof, JSON.stringify(host));
      } finally {
        raw.close();
      }
    }
    const raw = await Raw.open(server.addr.port);
    try {
      await raw.send("GET /echo?ok HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n");
      assert.match((await raw.readToEnd(5_000)).text, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok$/);
    } finally {
      raw.close();
    }
  } finally {
    await server.close();
  }
});

const HEADER_BYTES_LUA = `return function(req)
  local v = req.headers["x-in"] or ""
  return {
    headers = { ["x-out"] = "\\u{e9}\\u{20ac}\\xff", ["x-echo"] = v },
    body = (v:gsub(".", function(c) return string.format("%02x", c:byte()) end)),
  }
end
`;

/** A request with header bytes that are UTF-8 and not; checks what the Lua handler saw and sent. */
async function headerBytes(port: number): Promise<void> {
  const raw = await Raw.open(port);
  try {
    await raw.send(bytes("GET /hdr HTTP/1.1\r\nHost: h\r\nX-In: \xc3\xa9\xe9\r\n\r\n"));
    await raw.readUntil(() => {
      const r = responses(raw.bytes, ["GET"]);
      return r.got.length === 1 || r.error !== null;
    }, 10_000);
    const { got, error } = responses(raw.bytes, ["GET"]);
    assert.equal(error, null, latin1(raw.bytes));
    assert.equal(got[0]?.status, 200, latin1(raw.bytes));
    assert.equal(got[0].text, "c3a9e9", "the handler saw the request's bytes");
    const field = (name: string) => got[0].headers.find(([k]) => k === name)?.[1];
    assert.equal(field("x-echo"), "\xc3\xa9\xe9", "and sent them back unchanged");
    assert.equal(field("x-out"), "\xc3\xa9\xe2\x82\xac\xff", "its own header bytes, as they are");
  } finally {
    raw.close();
  }
}

Deno.test("HTTP wire: header bytes go through a Lua handler unchanged, all-in-one and in a worker", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/hdr.lua`, HEADER_BYTES_LUA);
  await Deno.writeTextFile(
    `${dir}/main.lua`,
    `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }
if ep.env("EP_SERVE", "") == "1" then
  ep.threads(1)
  ep.service("hdr", "hdr.lua")
end
`,
  );
  await Deno.writeTextFile(
    `${dir}/worker.lua`,
    `ep.connect { ep.env("EP_CONNECT") }\nep.threads(1)\nep.service("hdr", "hdr.lua")\n`,
  );
  try {
    const aio = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0", EP_SERVE: "1" });
    try {
      const m = await aio.waitFor(/listening on [^:]+:(\d+)/, 30_000);
      await headerBytes(Number(m[1]));
    } finally {
      await aio.stop();
    }
    const b = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0" });
    let w: Proc | null = null;
    try {
      const m = await b.waitFor(/listening on [^:]+:(\d+)/, 30_000);
      w = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: `127.0.0.1:${m[1]}` });
      await waitStats(`127.0.0.1:${m[1]}`, (s) => s.providers.length === 1, 30_000);
      await headerBytes(Number(m[1]));
    } finally {
      await w?.stop();
      await b.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
