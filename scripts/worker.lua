-- A module worker (`deno task worker`): pulls jobs for the demo services from the
-- balancers in EP_CONNECT (comma-separated host:port), default 127.0.0.1:7070.
local connect = {}
for addr in ep.env("EP_CONNECT", "127.0.0.1:7070"):gmatch("[^,%s]+") do
  connect[#connect + 1] = addr
end
ep.connect(connect)
ep.threads(tonumber(ep.env("EP_THREADS", "0"))) -- 0: the number of cores
local token = ep.env("EP_TOKEN")
if token then ep.token(token) end
ep.service("echo", "services/echo.lua")
ep.service("json", "services/json.lua")
ep.service("sleep", "services/sleep.lua", { slots = 64 })
