import assert from "node:assert/strict";
import { Router } from "./router.ts";
import { type Job, JobError } from "../job.ts";

function http(path: string, over: Partial<Job> = {}): Job {
  const first = path.split("/")[1] ?? "";
  return {
    service: first,
    protocol: "http",
    method: "GET",
    path,
    query: "",
    headers: [],
    body: new Uint8Array(0),
    deadlineMs: 0,
    priority: 0,
    remote: "127.0.0.1:1",
    ...over,
  };
}

function ep(service: string): Job {
  return { ...http("/" + service), protocol: "ep", method: "EP" };
}

Deno.test("router: the longest matching prefix wins, whatever the order routes were given in", () => {
  const router = new Router({
    prefixes: [
      { prefix: "/api", service: "api" },
      { prefix: "/api/v1/users", service: "user" },
      { prefix: "/api/v1", service: "v1" },
    ],
  });
  assert.equal(router.service(http("/api/v1/users/7")), "user");
  assert.equal(router.service(http("/api/v1/orders")), "v1");
  assert.equal(router.service(http("/api/v2")), "api");
  assert.deepEqual(router.prefixes.map((r) => r.prefix), ["/api/v1/users", "/api/v1", "/api"]);
});

Deno.test("router: a prefix takes its own path and paths below it, not a longer segment", () => {
  const router = new Router({ prefixes: [{ prefix: "/api/v1", service: "v1" }] });
  assert.equal(router.service(http("/api/v1")), "v1");
  assert.equal(router.service(http("/api/v1/")), "v1");
  assert.equal(router.service(http("/api/v1/x/y")), "v1");
  assert.equal(router.service(http("/api/v1x")), "api", "the default route: first segment");
  // A prefix written with its trailing slash takes the paths below it, and itself.
  const slash = new Router({ prefixes: [{ prefix: "/s/", service: "s" }] });
  assert.equal(slash.service(http("/s/")), "s");
  assert.equal(slash.service(http("/s/a")), "s");
  assert.equal(slash.service(http("/s")), "s", "the default route names s as well");
  assert.equal(slash.service(http("/sx")), "sx");
});

Deno.test("router: of two routes with one prefix the first given wins", () => {
  const router = new Router({
    prefixes: [{ prefix: "/a", service: "first" }, { prefix: "/a", service: "second" }],
  });
  assert.equal(router.service(http("/a/b")), "first");
});

Deno.test("router: the route function runs after the prefixes; undefined means the default route", async () => {
  const seen: string[] = [];
  const router = new Router({
    prefixes: [{ prefix: "/fixed", service: "fixed" }],
    route: (job) => {
      seen.push(job.path);
      if (job.path === "/sync") return "from-sync";
      if (job.path === "/async") return Promise.resolve("from-async");
      if (job.path === "/async-none") return Promise.resolve(undefined);
      return undefined;
    },
  });
  assert.equal(router.service(http("/fixed/x")), "fixed");
  assert.equal(router.service(http("/sync")), "from-sync");
  assert.equal(router.service(http("/other/x")), "other");
  const routed = router.service(http("/async"));
  assert.ok(routed instanceof Promise, "a promise only when the function gives one");
  assert.equal(await routed, "from-async");
  assert.equal(await router.service(http("/async-none")), "async-none");
  assert.deepEqual(seen, ["/sync", "/other/x", "/async", "/async-none"]);
});

Deno.test("router: EP jobs name their own service; neither prefixes nor the function see them", () => {
  let called = 0;
  const router = new Router({
    prefixes: [{ prefix: "/echo", service: "elsewhere" }],
    route: () => {
      called++;
      return "elsewhere";
    },
  });
  assert.equal(router.service(ep("echo")), "echo");
  assert.equal(called, 0);
  assert.equal(router.isEndpoint({ ...ep("x"), path: "/_ep/health" }), false);
});

Deno.test("router: /_ep/ is reserved for HTTP: endpoint handlers in order, else no_service", () => {
  const calls: string[] = [];
  const router = new Router({
    prefixes: [{ prefix: "/", service: "catch-all" }],
    endpoints: [
      (job) => {
        calls.push("first");
        return job.path === "/_ep/a" ? { body: "first" } : undefined;
      },
      (job) => {
        calls.push("second");
        return job.path.startsWith("/_ep/") && job.path !== "/_ep/none"
          ? { body: "second" }
          : undefined;
      },
    ],
  });
  assert.equal(router.isEndpoint(http("/_ep/a")), true);
  assert.equal(router.isEndpoint(http("/_ep/")), true);
  assert.equal(router.isEndpoint(http("/_ep")), false, "only paths under /_ep/");
  assert.equal(router.endpoint(http("/_ep/a")).body, "first");
  assert.equal(router.endpoint(http("/_ep/b")).body, "second");
  assert.deepEqual(calls, ["first", "first", "second"]);
  assert.throws(
    () => router.endpoint(http("/_ep/none")),
    (e: unknown) =>
      e instanceof JobError && e.kind === "no_service" &&
      e.message === 'No ep endpoint "/_ep/none"',
  );
  assert.throws(() => new Router().endpoint(http("/_ep/health")), JobError);
});
