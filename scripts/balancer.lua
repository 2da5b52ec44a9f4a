-- A balancer (`deno task balancer`): clients and module workers connect to it on one port.
-- It runs no services itself; workers (scripts/worker.lua) bring them.
ep.listen { port = tonumber(ep.env("EP_PORT", "7070")), host = ep.env("EP_HOST", "127.0.0.1") }
local token = ep.env("EP_TOKEN")
if token then ep.token(token) end
