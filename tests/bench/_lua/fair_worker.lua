-- The workers of `fair_bench.ts` and `hedge_bench.ts`, started like scripts/worker.lua
-- (`deno run -A mod.ts run tests/bench/_lua/fair_worker.lua`): one handler thread and one
-- slot, pulling service `work` from every balancer in EP_CONNECT (comma-separated).
-- EP_BENCH_STALL=N (hedge_bench.ts, one worker only) makes every Nth job of this worker
-- stall EP_BENCH_STALL_MS more milliseconds (a GC pause, a slow disk); EP_BENCH_HEDGE=1
-- marks `work` idempotent (`hedge = true`), so the balancers may hedge it (after its p95,
-- or after EP_BENCH_HEDGE_MS milliseconds when that is set: `hedge_ms`). EP_BENCH_PREFETCH
-- sets `prefetch` (default 4).
local connect = {}
for addr in ep.env("EP_CONNECT", "127.0.0.1:7070"):gmatch("[^,%s]+") do
  connect[#connect + 1] = addr
end
ep.connect(connect)
ep.threads(1)
local prefetch = tonumber(ep.env("EP_BENCH_PREFETCH", ""))
if prefetch then ep.config { prefetch = prefetch } end
local hedge = ep.env("EP_BENCH_HEDGE", "0") == "1"
local hedge_ms = hedge and tonumber(ep.env("EP_BENCH_HEDGE_MS", "")) or nil
ep.service("work", "work.lua", { slots = 1, hedge = hedge, hedge_ms = hedge_ms })
