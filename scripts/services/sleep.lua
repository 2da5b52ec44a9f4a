-- sleep: holds the job for `?ms=N` (or a body "N") milliseconds with ep.sleep, which is
-- precise to a few hundredths of a millisecond and lets other jobs run meanwhile. The
-- balancer benchmarks use it to simulate jobs.
return function(req)
  local ms = tonumber(req.query.ms) or tonumber(req.body) or 0
  ep.sleep(ms)
  return "slept " .. ms .. "\n"
end
