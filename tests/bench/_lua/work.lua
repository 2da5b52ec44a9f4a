-- work: holds the job for a body "N" (EP) or `?ms=N` (HTTP) milliseconds with ep.sleep. On
-- a worker started with EP_BENCH_STALL=N, every Nth job it runs sleeps EP_BENCH_STALL_MS
-- (default 200) more, and runs to its end even when cancelled (a GC pause, a slow disk).
local stall_every = tonumber(ep.env("EP_BENCH_STALL", "0")) or 0
local stall_ms = tonumber(ep.env("EP_BENCH_STALL_MS", "200")) or 200
local runs = 0
return function(req)
  runs = runs + 1
  local ms = tonumber(req.query.ms) or tonumber(req.body) or 0
  if stall_every > 0 and runs % stall_every == 0 then ms = ms + stall_ms end
  if ms > 0 then ep.sleep(ms) end
  return ""
end
