-- The Lua workers of `cpu_bench.ts`, started like scripts/worker.lua (`deno run -A mod.ts
-- run tests/bench/_lua/cpu_worker.lua`): one handler thread, pulling from EP_CONNECT.
-- EP_BENCH_ROLE says which services it serves; EP_BENCH_SLOTS (default 16) is how many jobs
-- it runs at once (call_wait and ticker add one slot each; all slots are shared):
--   main    wait (ep.sleep, reports the time slept), call_wait (waits in ep.call for the
--           callee), ticker (starts and stops an ep.every on the thread)
--   callee  callee (the wait service, for call_wait to call)
--   trivial trivial (the wait service under another name, for the saturation run); cpu_bench
--           starts it with EP_INLINE=1: one slot, its Lua on its main thread (lua/inline.ts)
--   trivial_thread  the same as trivial on a handler thread (the default)
ep.connect(ep.env("EP_CONNECT", "127.0.0.1:7070"))
ep.threads(1)
local slots = tonumber(ep.env("EP_BENCH_SLOTS", "16"))
local role = ep.env("EP_BENCH_ROLE", "main")
if role == "main" then
  ep.service("wait", "wait.lua", { slots = slots })
  ep.service("call_wait", "call_wait.lua")
  ep.service("ticker", "ticker.lua")
elseif role == "callee" then
  ep.service("callee", "wait.lua", { slots = slots })
elseif role == "trivial" then
  ep.service("trivial", "wait.lua", { slots = slots })
elseif role == "trivial_thread" then
  ep.service("trivial_thread", "wait.lua", { slots = slots })
else
  error("EP_BENCH_ROLE must be main, callee, trivial or trivial_thread, got " .. role)
end
