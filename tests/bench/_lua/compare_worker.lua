-- The Lua worker of `compare.ts` (contender `ep-lua`), started the way scripts/worker.lua
-- starts (`deno run -A mod.ts run tests/bench/_lua/compare_worker.lua`): a module worker with one
-- handler thread and one slot, serving the demo `sleep` service (scripts/services/sleep.lua,
-- which holds the job with ep.sleep for `?ms=N` or a body "N"). Pulls from the balancer in
-- EP_CONNECT.
ep.connect(ep.env("EP_CONNECT", "127.0.0.1:7070"))
ep.threads(1)
ep.service("sleep", "../../../scripts/services/sleep.lua", { slots = 1 })
