import assert from "node:assert/strict";
import { requestLowLatency } from "./latency_hints.ts";

const linux = Deno.build.os === "linux" && ["x86_64", "aarch64"].includes(Deno.build.arch);

/** Runs `code` in a child Deno (under `nice -n <nice>` when given) and returns its stdout. */
async function child(code: string, env: Record<string, string> = {}, nice?: number) {
  const deno = [Deno.execPath(), "eval", "--quiet", code];
  const [cmd, ...args] = nice === undefined ? deno : ["nice", "-n", String(nice), ...deno];
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "inherit" })
    .output();
  assert.equal(out.code, 0);
  return new TextDecoder().decode(out.stdout).trim();
}

const PROBE = `
import { requestLowLatency } from ${
  JSON.stringify(new URL("./latency_hints.ts", import.meta.url).href)
};
const before = Deno.readTextFileSync("/proc/thread-self/stat").split(") ")[1].split(" ");
const slackBefore = Deno.readTextFileSync("/proc/self/timerslack_ns").trim();
const result = requestLowLatency();
const after = Deno.readTextFileSync("/proc/thread-self/stat").split(") ")[1].split(" ");
const sched = Deno.readTextFileSync("/proc/thread-self/sched");
const slack = Deno.readTextFileSync("/proc/self/timerslack_ns").trim();
const slice = /se\\.slice\\s*:\\s*(\\d+)/.exec(sched)?.[1] ?? "none";
// stat fields after the command: state is 0, priority 15, nice 16, policy 38.
console.log(JSON.stringify({ result, slackBefore, slack, nice: [before[16], after[16]], policy: [before[38], after[38]], slice }));
`;

Deno.test("requestLowLatency with a slice and a slack of 0 asks for nothing and says off", () => {
  assert.deepEqual(requestLowLatency({ sliceUs: 0, slackNs: 0 }), { slice: "off", slack: "off" });
});

Deno.test({
  name:
    "requestLowLatency keeps the thread's nice value and policy, sets the slice and slack asked",
  ignore: !linux,
  async fn() {
    const r = JSON.parse(
      await child(PROBE, { EP_SCHED_SLICE_US: "250", EP_TIMER_SLACK_NS: "2000" }, 5),
    );
    assert.deepEqual(r.result, { slice: "set", slack: "set" });
    assert.equal(r.slack, "2000");
    assert.deepEqual(r.nice, ["5", "5"]);
    assert.deepEqual(r.policy, ["0", "0"]);
    // Kernels before 6.12 accept and ignore sched_runtime for normal threads.
    if (r.slice !== "none") assert.equal(r.slice, "250000");
  },
});

Deno.test({
  name: "EP_SCHED_SLICE_US=0 and EP_TIMER_SLACK_NS=0 leave the kernel's slice and slack",
  ignore: !linux,
  async fn() {
    const r = JSON.parse(await child(PROBE, { EP_SCHED_SLICE_US: "0", EP_TIMER_SLACK_NS: "0" }));
    assert.deepEqual(r.result, { slice: "off", slack: "off" });
    // The slack a child starts with is its parent's (the kernel's 50 µs unless the parent,
    // a test runner that ran ep code, asked for another): it is left as it was.
    assert.equal(r.slack, r.slackBefore);
    assert.equal(r.nice[0], r.nice[1]);
  },
});

Deno.test({
  name: "By default only the timer slack is asked for (1 µs), not the slice",
  ignore: !linux,
  async fn() {
    const r = JSON.parse(await child(PROBE));
    assert.deepEqual(r.result, { slice: "off", slack: "set" });
    assert.equal(r.slack, "1000");
  },
});
