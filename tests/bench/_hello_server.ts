/**
 * A "hello" server for the HTTP benchmark, run in its own process:
 * `deno run -A tests/bench/_hello_server.ts ep|deno-serve`. Prints `port <n>` when ready.
 */
import { serve } from "../../core/net/server.ts";

const mode = Deno.args[0] ?? "ep";
const body = new TextEncoder().encode("hello\n");
if (mode === "ep") {
  const server = serve({
    port: 0,
    handler: () => ({ status: 200, headers: [["content-type", "text/plain"]], body }),
  });
  console.log(`port ${server.addr.port}`);
} else {
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    () => new Response(body, { headers: { "content-type": "text/plain" } }),
  );
  console.log(`port ${server.addr.port}`);
}
