-- The all-in-one default (`deno task start`): a balancer on port 7070 whose own handler
-- threads serve the demo services, with no TCP hop between them. Module workers may
-- still connect to it (scripts/worker.lua) to add capacity.
ep.listen { port = tonumber(ep.env("EP_PORT", "7070")), host = ep.env("EP_HOST", "127.0.0.1") }
ep.threads(tonumber(ep.env("EP_THREADS", "2")))
ep.service("echo", "services/echo.lua")
ep.service("json", "services/json.lua")
ep.service("sleep", "services/sleep.lua", { slots = 64, timeout_ms = 60000 })
