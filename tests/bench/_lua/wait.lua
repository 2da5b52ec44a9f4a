-- wait: holds the job for `?ms=N` (HTTP) or a body "N" (EP) milliseconds with ep.sleep, and
-- reports in `x-slept-us` how long the sleep took as the handler saw it (ep.now before and
-- after), so the load generator's job overshoot is the wake-up lateness. A 0 ms job does not
-- call ep.sleep: it is the trivial job the sleeping ones are compared with.
return function(req)
  local ms = tonumber(req.query.ms) or tonumber(req.body) or 0
  local slept = 0
  if ms > 0 then
    local t0 = ep.now()
    ep.sleep(ms)
    slept = (ep.now() - t0) * 1000
  end
  return { headers = { ["x-slept-us"] = string.format("%d", math.floor(slept + 0.5)) }, body = "" }
end
