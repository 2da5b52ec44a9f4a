-- ticker: runs an ep.every on this handler thread, to measure what a timer costs.
-- Body "start <period ms> <sleep ms>" starts one (its callback counts its calls and sleeps
-- <sleep ms> when that is above 0) and answers "started"; "stop" cancels it and answers the
-- number of calls since the start.
local handle
local ticks = 0
return function(req)
  local period, sleep = req.body:match("^start ([%d.]+) ([%d.]+)$")
  if period then
    if handle then handle:cancel() end
    ticks = 0
    local ms = tonumber(sleep)
    handle = ep.every(tonumber(period), function()
      ticks = ticks + 1
      if ms > 0 then ep.sleep(ms) end
    end)
    return "started"
  elseif req.body == "stop" then
    if handle then handle:cancel() end
    handle = nil
    return tostring(ticks)
  end
  return { status = 400, body = "expected \"start <period ms> <sleep ms>\" or \"stop\"" }
end
