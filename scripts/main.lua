-- The all-in-one default (`deno task start`): a balancer on port 7070 whose own handler
-- threads serve the demo services, with no TCP hop between them. Module workers may
-- still connect to it (scripts/worker.lua) to add capacity.
-- Port, host and threads: EP_PORT (7070), EP_HOST (127.0.0.1), EP_THREADS (2 here; 0 means
-- the number of cores), or the flags of the same names (`deno task ep --port 7071 start`).
ep.listen {}
ep.threads(tonumber(ep.env("EP_THREADS", "2")))
ep.service("echo", "services/echo.lua")
ep.service("json", "services/json.lua")
ep.service("sleep", "services/sleep.lua", { slots = 64, timeout_ms = 60000 })
