-- sleep: holds the job for `?ms=N` (or a body "N") milliseconds with ep.sleep, which is
-- precise to a few hundredths of a millisecond and lets other jobs run meanwhile. The
-- balancer benchmarks use it to simulate jobs; `x-slept-us` says how long it held the job
-- (µs), as the TypeScript demo `sleep` service does, so they can report its accuracy.
local floor = math.floor

return function(req)
  local ms = tonumber(req.query.ms) or tonumber(req.body) or 0
  local t0 = ep.now()
  ep.sleep(ms)
  return {
    headers = {
      ["content-type"] = "text/plain; charset=utf-8",
      ["x-slept-us"] = tostring(floor((ep.now() - t0) * 1000 + 0.5)),
    },
    body = "slept " .. ms .. "\n",
  }
end
