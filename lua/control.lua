-- The control-script half of the `ep` module: what a process is (balancer, worker, both),
-- where it listens and connects, which services it runs, which other clusters it calls.
-- Loaded by lua/control.ts on top of ep.lua, in one of two modes:
--   "control": in the main thread's engine, where the control script runs once;
--   "thread":  in each handler thread's engine, where the control script is run again only
--              to pick up handlers written inline (`ep.service("x", function(req) ... end)`).
--              There the script's top level does nothing but `ep.service`: no log line, no
--              timer, no upstream (those happened once, on the main thread). This file
--              then returns a function that runs the script's main chunk that way.
-- Reference: lua/API.md ("Control script"). LuaLS annotations make this file the stub
-- editors complete `ep.` from.
local mode, ext = ...

---@class ep
ep = ep

local function check(cond, fname, argn, expected, got)
  if not cond then
    error(("bad argument #%d to '%s' (%s expected, got %s)"):format(argn, fname, expected, type(got)), 3)
  end
end

-- `s` quoted for an error message, on one line (%q writes a newline as "\" and a newline).
local function quote(s)
  return (("%q"):format(s):gsub("\\\n", "\\n"))
end

-- A value for an error message, on one line: control characters as \ddd escapes (3 digits).
local function oneline(v)
  return (tostring(v):gsub("%c", function(c) return ("\\%03d"):format(c:byte()) end))
end

-- A name spelt like a service's (protocol/ep_frames.ts, isServiceName), else an error at
-- the caller of `fname`.
local function check_name(name, fname, argn, what)
  if type(name) ~= "string" then
    error(("bad argument #%d to '%s' (string expected, got %s)"):format(argn, fname, type(name)), 3)
  end
  if not ext.is_service_name(name) then
    error(("bad argument #%d to '%s' (%s expected: 1–64 characters of a-z 0-9 _ . - starting with a letter or digit; got %s)"):format(
      argn, fname, what, quote(name)), 3)
  end
end

if mode == "thread" then
  __EP_INLINE = __EP_INLINE or {}
  local quiet = false -- while the script's top level runs
  local noop = function() end
  ep.listen, ep.connect, ep.threads, ep.route, ep.token, ep.config, ep.upstream, ep.spawn =
    noop, noop, noop, noop, noop, noop, noop, noop
  ep.exit = function()
    if quiet then return end
    error("ep.exit is only available in the control script", 2)
  end
  -- ep.log.*, print, ep.timer and ep.every do nothing during the top level, and work as
  -- usual afterwards, in the inline handlers (also when the script kept them in locals).
  local log = ep.log
  for _, level in ipairs({ "debug", "info", "warn", "error" }) do
    local f = log[level]
    log[level] = function(...)
      if quiet then return end
      return f(...)
    end
  end
  local real_print = print
  print = function(...)
    if quiet then return end
    return real_print(...)
  end
  local no_timer = { id = 0, cancel = noop }
  local timer, every = ep.timer, ep.every
  ep.timer = function(ms, fn)
    if quiet then return no_timer end
    return timer(ms, fn)
  end
  ep.every = function(ms, fn)
    if quiet then return no_timer end
    return every(ms, fn)
  end
  function ep.service(name, handler)
    if type(handler) == "function" then __EP_INLINE[name] = handler end
  end
  return function(main)
    quiet = true
    main()
    quiet = false
  end
end

--- Become a balancer: listen for clients and workers on one port (HTTP/1.1 and EP).
---@param opts { port?: integer, host?: string }
function ep.listen(opts)
  opts = opts or {}
  check(type(opts) == "table", "ep.listen", 1, "table", opts)
  for k in pairs(opts) do
    if k ~= "port" and k ~= "host" then
      error(("bad argument #1 to 'ep.listen' (unknown option '%s')"):format(oneline(k)), 2)
    end
  end
  local port = opts.port
  if port == nil then
    local text = ep.env("EP_PORT", "7070")
    port = text:match("^%d+$") and tonumber(text)
    if not port or port > 65535 then
      error(("EP_PORT %s is not a port: an integer from 0 to 65535"):format(quote(text)), 2)
    end
  end
  port = tonumber(port)
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    error(("bad argument #1 to 'ep.listen' (port expected: an integer from 0 to 65535; got %s)"):format(
      oneline(opts.port)), 2)
  end
  local host = opts.host or ep.env("EP_HOST", "127.0.0.1")
  check(type(host) == "string" and host ~= "", "ep.listen", 1, "host string", host)
  ext.listen(port, host)
end

--- Become a worker of these balancers ("host:port" each): pull jobs from all of them.
---@param addrs string|string[]
function ep.connect(addrs)
  if type(addrs) == "string" then addrs = { addrs } end
  check(type(addrs) == "table", "ep.connect", 1, "table of \"host:port\"", addrs)
  for i, a in ipairs(addrs) do
    check(type(a) == "string", "ep.connect", 1, "string at index " .. i, a)
    ext.connect(a)
  end
end

--- Number of handler threads (default, and 0: the number of cores).
---@param n integer
function ep.threads(n)
  if math.type(n) ~= "integer" or n < 0 then
    error(("bad argument #1 to 'ep.threads' (number of threads expected: 0 (the number of cores) or more; got %s)"):format(
      oneline(n)), 2)
  end
  ext.threads(n)
end

-- `{ min =, max = }` with integers 1 <= min <= max <= limit, else an error at the caller of
-- `fname` saying `expected` (with %d for the limit).
local function check_range(range, fname, argn, expected, limit)
  local ok = type(range) == "table" and math.type(range.min) == "integer" and
    math.type(range.max) == "integer" and range.min >= 1 and range.max >= range.min and
    range.max <= limit
  if not ok then
    local got = type(range) == "table"
      and ("min = %s, max = %s"):format(oneline(range.min), oneline(range.max))
      or type(range)
    error(("bad argument #%d to '%s' (%s, got %s)"):format(argn, fname,
      expected:format(limit), got), 3)
  end
end

-- A positive number of milliseconds, else an error at the caller of `fname`.
local function check_ms(ms, fname, argn, what)
  if type(ms) ~= "number" or not (ms > 0) or ms == math.huge then
    error(("bad argument #%d to '%s' (%s expected as a positive number of ms, got %s)"):format(
      argn, fname, what, type(ms) == "number" and oneline(ms) or type(ms)), 3)
  end
end

-- What services scale in this script: "threads", "slots", or nil (see ep.service).
local scales = nil

--- Run a service on this process's handler threads: a file (relative to the script's
--- folder) that returns the handler, or a function written inline. `slots` (default: the
--- number of threads) adds to the jobs this process runs at once; `timeout_ms` interrupts a
--- handler that runs longer (answered 504 / EP timeout). `hedge = true` says the handler is
--- idempotent: a balancer may send a copy of a job that runs long (past the service's
--- recent p95 service time, or `hedge_ms`) to another worker with a free slot, the first
--- answer wins (`req.hedge` is true on the copy). `threads = { min =, max = }`
--- scales the handler threads on this service's queue wait: one more while its p99 stays
--- above `target_wait_ms` (default 50), one fewer when the threads sit idle; `slots = { min =,
--- max = }` scales the jobs they run at once the same way, one slot at a time, on the same
--- threads (for handlers that mostly wait); one or the other per script. `description`
--- (one line) and `version` say what it is: shown at the balancer's /_ep/services and by
--- `ep services`.
---@param name string
---@param handler string|fun(req: ep.Request): any
---@param opts? { slots?: integer|{ min: integer, max: integer }, timeout_ms?: integer, hedge?: boolean, hedge_ms?: integer, threads?: { min: integer, max: integer }, target_wait_ms?: number, description?: string, version?: string }
function ep.service(name, handler, opts)
  check_name(name, "ep.service", 1, "service name")
  check(type(handler) == "string" or type(handler) == "function", "ep.service", 2,
    "file name or function", handler)
  opts = opts or {}
  check(type(opts) == "table", "ep.service", 3, "table", opts)
  check(opts.description == nil or type(opts.description) == "string", "ep.service", 3,
    "string description", opts.description)
  check(opts.version == nil or type(opts.version) == "string", "ep.service", 3,
    "string version", opts.version)
  check(opts.hedge == nil or type(opts.hedge) == "boolean", "ep.service", 3,
    "boolean hedge", opts.hedge)
  local hedge_ms = opts.hedge_ms
  if hedge_ms ~= nil and not (math.type(hedge_ms) == "integer" and hedge_ms >= 1 and
        hedge_ms <= 0xfffffffe) then
    error(("bad argument #3 to 'ep.service' (integer hedge_ms from 1 to 4294967294 expected, got %s)"):format(
      oneline(hedge_ms)), 2)
  end
  if hedge_ms ~= nil and opts.hedge == false then
    error("bad argument #3 to 'ep.service' (hedge_ms given with hedge = false)", 2)
  end
  local smin, smax = 0, 0
  if type(opts.slots) == "table" then
    check_range(opts.slots, "ep.service", 3,
      "slots = n or slots = { min =, max = } expected with integers 1 <= min <= max <= %d", 65535)
    smin, smax = opts.slots.min, opts.slots.max
  end
  for _, k in ipairs({ "slots", "timeout_ms" }) do
    local v = opts[k]
    if k == "slots" and smin > 0 then v = nil end
    if v ~= nil and (math.type(v) ~= "integer" or v < 0) then
      error(("bad argument #3 to 'ep.service' (%s must be an integer of at least 0; got %s)"):format(
        k, oneline(v)), 2)
    end
  end
  local tmin, tmax, target = 0, 0, 0
  if opts.threads ~= nil then
    check_range(opts.threads, "ep.service", 3,
      "threads = { min =, max = } expected with integers 1 <= min <= max <= %d", 1024)
    tmin, tmax = opts.threads.min, opts.threads.max
  end
  -- One unit scales per script: the threads, or the slots they offer.
  if (tmin > 0 and (smin > 0 or scales == "slots")) or (smin > 0 and scales == "threads") then
    error("bad argument #3 to 'ep.service' (threads and slots cannot both scale: one of threads = { min =, max = } and slots = { min =, max = } per script)", 2)
  end
  if tmin > 0 then scales = "threads" elseif smin > 0 then scales = "slots" end
  if opts.target_wait_ms ~= nil then
    if opts.threads == nil and smin == 0 then
      error("bad argument #3 to 'ep.service' (target_wait_ms needs threads = { min =, max = } or slots = { min =, max = })", 2)
    end
    check_ms(opts.target_wait_ms, "ep.service", 3, "target_wait_ms")
    target = opts.target_wait_ms
  end
  ext.service(name, type(handler) == "string" and handler or "", type(handler) == "function",
    smin > 0 and 0 or opts.slots or 0, opts.timeout_ms or 0, opts.hedge == true or hedge_ms ~= nil,
    hedge_ms or 0, tmin, tmax, target, opts.description, opts.version, smin, smax)
end

local SPAWN_KEYS = { script = true, min = true, max = true, target_wait_ms = true }

--- Run child worker processes of a control script (relative to this script's folder),
--- between `min` (default 1) and `max` of them: one more while their services' queue-wait
--- p99 stays above `target_wait_ms` (default 50), one fewer when they sit idle. They stop
--- with this process, even when it is killed.
---@param opts { script: string, min?: integer, max: integer, target_wait_ms?: number }
function ep.spawn(opts)
  check(type(opts) == "table", "ep.spawn", 1, "table", opts)
  for k in pairs(opts) do
    if not SPAWN_KEYS[k] then
      error(("bad argument #1 to 'ep.spawn' (unknown option '%s')"):format(oneline(k)), 2)
    end
  end
  check(type(opts.script) == "string" and opts.script ~= "", "ep.spawn", 1,
    "script = file name", opts.script)
  local range = { min = opts.min or 1, max = opts.max }
  check_range(range, "ep.spawn", 1, "min and max expected as integers 1 <= min <= max <= %d", 256)
  local target = opts.target_wait_ms or 50
  check_ms(target, "ep.spawn", 1, "target_wait_ms")
  ext.spawn(opts.script, range.min, range.max, target)
end

--- Route HTTP requests: `ep.route("/api/users", "user")` sends paths under a prefix to a
--- service; `ep.route(function(req) return "user" end)` decides per request (return nil for
--- the default: the first path segment names the service).
---@param prefix_or_fn string|fun(req: ep.Request): string|nil
---@param service? string
function ep.route(prefix_or_fn, service)
  if type(prefix_or_fn) == "function" then
    __EP_ROUTE = prefix_or_fn
    ext.route_fn()
    return
  end
  check(type(prefix_or_fn) == "string", "ep.route", 1, "string prefix or function", prefix_or_fn)
  check_name(service, "ep.route", 2, "service name")
  ext.route(prefix_or_fn, service)
end

--- The token workers present (and this balancer requires from workers); default EP_TOKEN.
---@param token string
function ep.token(token)
  check(type(token) == "string", "ep.token", 1, "string", token)
  ext.token(token)
end

-- Each key with its least value.
local CONFIG_KEYS = {
  max_queue = 1, timeout_ms = 1, retries = 0, prefetch = 0,
  prefetch_budget_ms = 0, grace_ms = 0, concurrency = 1,
}
local BOOLEAN_KEYS = { expose_errors = true }

--- Balancer and worker tuning: `max_queue` (per service, default 10000), `timeout_ms`
--- (default job deadline, 30000), `retries` (redeliveries of a lost worker's job, 1),
--- `prefetch` (jobs beyond its slots a worker may hold, 4), `prefetch_budget_ms` (beyond
--- one, prefetched jobs wait in a worker at most about this long, 3), `grace_ms` (wait for a
--- service's first worker, 5000), `concurrency` (jobs one handler thread runs at once);
--- `expose_errors = true` sends handlers' own error messages to clients (development).
---@param opts { max_queue?: integer, timeout_ms?: integer, retries?: integer, prefetch?: integer, prefetch_budget_ms?: integer, grace_ms?: integer, concurrency?: integer, expose_errors?: boolean }
function ep.config(opts)
  check(type(opts) == "table", "ep.config", 1, "table", opts)
  for k, v in pairs(opts) do
    if BOOLEAN_KEYS[k] then
      check(type(v) == "boolean", "ep.config", 1, "boolean " .. k, v)
      ext.config(k, v and 1 or 0)
    else
      check(type(k) == "string" and math.type(v) == "integer", "ep.config", 1,
        "table of integers", v)
      if not CONFIG_KEYS[k] then
        error(string.format("bad argument #1 to 'ep.config' (unknown key '%s')", oneline(k)), 2)
      end
      if v < CONFIG_KEYS[k] then
        error(("bad argument #1 to 'ep.config' (%s must be at least %d; got %d)"):format(
          k, CONFIG_KEYS[k], v), 2)
      end
      ext.config(k, v)
    end
  end
end

local upstreams = {} -- names given so far

--- Name another cluster: its balancers ("host:port" each, tried in order, failing over to
--- the next) and the token to present to them (their client token). `ep.call(service, body,
--- { upstream = name })` then calls a service behind them.
---@param name string
---@param addrs string|string[]
---@param opts? { token?: string }
function ep.upstream(name, addrs, opts)
  check_name(name, "ep.upstream", 1, "service-like name")
  if upstreams[name] then
    error(("bad argument #1 to 'ep.upstream' (upstream %s is already named)"):format(quote(name)), 2)
  end
  if type(addrs) == "string" then addrs = { addrs } end
  check(type(addrs) == "table", "ep.upstream", 2, "\"host:port\" or a list of them", addrs)
  if addrs[1] == nil then
    error("bad argument #2 to 'ep.upstream' (at least one \"host:port\" expected)", 2)
  end
  for i, a in ipairs(addrs) do
    local port = type(a) == "string" and tonumber(a:match("^[^%s,]+:(%d+)$"))
    if not port or port < 1 or port > 65535 then
      error(("bad argument #2 to 'ep.upstream' (\"host:port\" expected at index %d, got %s)"):format(
        i, type(a) == "string" and quote(a) or tostring(a)), 2)
    end
  end
  opts = opts or {}
  check(type(opts) == "table", "ep.upstream", 3, "table", opts)
  for k in pairs(opts) do
    if k ~= "token" then
      error(("bad argument #3 to 'ep.upstream' (unknown option '%s')"):format(oneline(k)), 2)
    end
  end
  check(opts.token == nil or type(opts.token) == "string", "ep.upstream", 3, "string token",
    opts.token)
  upstreams[name] = true
  ext.upstream(name, table.concat(addrs, ","), opts.token)
end

--- Stop the process with this exit code: after the script (nothing is started), or from a
--- timer callback at once (the callback ends there, quietly).
---@param code? integer
function ep.exit(code)
  check(code == nil or math.type(code) == "integer", "ep.exit", 1, "integer", code)
  code = code or 0
  -- In a timer callback (ep's own coroutine): the runtime ends the callback and exits.
  if ep._managed() then coroutine.yield("exit", code) end
  ext.exit(code)
  error("__ep_exit__", 0)
end
