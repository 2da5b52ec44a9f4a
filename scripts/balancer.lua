-- A balancer (`deno task balancer`): clients and module workers connect to it on one port.
-- It runs no services itself; workers (scripts/worker.lua) bring them.
ep.listen {} -- EP_PORT (7070) and EP_HOST (127.0.0.1), or --port and --host
local token = ep.env("EP_TOKEN")
if token then ep.token(token) end
