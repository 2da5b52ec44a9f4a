-- The `ep` module seen by service handlers: the friendly API, written in Lua on top of the
-- thin host table the engine passes in (lua/_host.ts, `HostTable.push`). Reference with
-- examples: lua/API.md. The annotations are for LuaLS-aware editors.
--
-- Loaded once per engine as chunk "=ep.lua" with the host table as its argument; sets
-- `package.loaded.ep` and the global `ep`, installs the `require` searcher, redirects
-- `print` to the log and sets up the sandbox (the end of this file); returns the timer
-- dispatcher the engine calls.

local host = ...

local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select
local setmetatable, getmetatable, rawget = setmetatable, getmetatable, rawget
local load = load -- the original: text-only use below, and the sandbox's load wraps it
local concat = table.concat
local format, gsub, find, sub = string.format, string.gsub, string.find, string.sub
local yield = coroutine.yield
local tointeger, maxinteger, ult = math.tointeger, math.maxinteger, math.ult

---@class ep
local ep = {}

--- The request a handler gets (`function(req)`); reference: lua/API.md, "Requests and
--- responses". Built by the engine (lua/_marshal.ts), not by Lua code.
---@class ep.Request
---@field service string the service the job was routed to
---@field method string "GET", "POST", … (HTTP), or "EP"
---@field path string the path without the query; "/<service>" for EP
---@field query table<string, string> the query, percent-decoded (last of a repeated name)
---@field query_string string the raw query, without "?"
---@field headers table<string, string> header fields by lower-case name (repeats joined with ", ")
---@field body string the body, binary-safe
---@field attempt integer 1 on the first delivery, 2, 3, … when redelivered (or hedged)
---@field hedge boolean true on a hedged copy: the balancer sent the job here too as it ran long
---@field id string? the request id (the client's x-request-id, or the balancer's)
---@field deadline_ms integer? whole milliseconds left when the handler started; nil: no deadline

---------------------------------------------------------------------------------------
-- log

local function join(...)
  local n = select("#", ...)
  if n == 1 then return tostring((...)) end
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  return concat(parts, " ")
end

local host_log = host.log

--- Logs through LogTape, category {"ep", "lua", <service>}. Arguments are converted with
--- `tostring` and joined with spaces, like `print`.
ep.log = {
  ---@param ... any
  debug = function(...) host_log("debug", join(...)) end,
  ---@param ... any
  info = function(...) host_log("info", join(...)) end,
  ---@param ... any
  warn = function(...) host_log("warn", join(...)) end,
  ---@param ... any
  error = function(...) host_log("error", join(...)) end,
}

-- print goes to the log at info level (stdout belongs to the CLI).
print = ep.log.info

---------------------------------------------------------------------------------------
-- time

local host_now = host.now

--- Milliseconds, fractional (microsecond resolution), monotonic; counted from the start
--- of the handler thread, so only differences are meaningful.
---@type fun(): number
ep.now = host_now

-- A value for an error message, on one line: control characters as \ddd escapes (3 digits).
local function oneline(v)
  return (gsub(tostring(v), "%c", function(c) return format("\\%03d", c:byte()) end))
end

local function check_ms(name, ms)
  local n = tonumber(ms)
  if n == nil or n ~= n or n < 0 or n == math.huge then
    error(format("bad argument #1 to '%s' (milliseconds expected, got %s)", name, oneline(ms)), 3)
  end
  return n
end

local host_block = host.block

--- Suspends the calling handler (or timer callback) for `ms` milliseconds; other jobs
--- run meanwhile. Only inside a handler or a timer callback, not in a coroutine of its own.
---@param ms number
function ep.sleep(ms)
  local start = host_now()
  local n = check_ms("ep.sleep", ms)
  if not host.managed() then
    error("ep.sleep is only available inside a handler or a timer callback", 2)
  end
  -- A handler thread with nothing else to do waits it out in place (no yield); else, or
  -- when something arrives meanwhile, the call yields for what is left.
  if host_block ~= nil and host_block(start + n) then return end
  -- The deadline counts from now, not from when the runtime sees the yield.
  yield("sleep", n, start)
end

local timers = {} -- id -> { fn = function, every = boolean }

---@class ep.Timer
---@field id integer
local Timer = {}
Timer.__index = Timer

--- Cancels the timer; a callback already running finishes. Calling it twice is harmless.
function Timer:cancel()
  if timers[self.id] then
    timers[self.id] = nil
    host.timer_cancel(self.id)
  end
end

local function start_timer(name, ms, fn, every)
  local n = check_ms(name, ms)
  if type(fn) ~= "function" then
    error(format("bad argument #2 to '%s' (function expected, got %s)", name, type(fn)), 3)
  end
  local id = host.timer_start(n, every)
  timers[id] = { fn = fn, every = every }
  return setmetatable({ id = id }, Timer)
end

--- Calls `fn()` once after `ms` milliseconds, in a coroutine of its own (it may call
--- ep.sleep). An error in `fn` is logged, not fatal.
---@param ms number
---@param fn fun()
---@return ep.Timer
function ep.timer(ms, fn) return start_timer("ep.timer", ms, fn, false) end

--- Calls `fn()` every `ms` milliseconds (fixed rate), each time in a coroutine of its own,
--- until the returned handle is cancelled. Errors are logged, not fatal.
---@param ms number
---@param fn fun()
---@return ep.Timer
function ep.every(ms, fn) return start_timer("ep.every", ms, fn, true) end

-- Called by the engine in a fresh coroutine when timer `id` is due.
local function fire(id)
  local t = timers[id]
  if t == nil then return end -- cancelled meanwhile
  if not t.every then timers[id] = nil end
  t.fn()
end

---------------------------------------------------------------------------------------
-- json

local json = {}

--- The JSON `null`: `decode` gives it for null, `encode` writes null for it.
json.null = host.json_null

local array_mt = host.array_mt

--- Marks `t` (default: a new table) as a JSON array, so that an empty one encodes as `[]`.
---@param t table|nil
---@return table
function json.array(t)
  t = t or {}
  if type(t) ~= "table" then
    error(format("bad argument #1 to 'ep.json.array' (table expected, got %s)", type(t)), 2)
  end
  return setmetatable(t, array_mt)
end

--- Whether `t` is marked as a JSON array.
---@param t any
---@return boolean
function json.is_array(t) return type(t) == "table" and getmetatable(t) == array_mt end

--- Encodes a Lua value as JSON text; raises an error for functions, cycles, NaN, ....
---@type fun(value: any): string
json.encode = host.json_encode

--- Decodes JSON text; raises an error for invalid JSON.
---@type fun(text: string): any
json.decode = host.json_decode

ep.json = json

---------------------------------------------------------------------------------------
-- environment, calls

--- The environment variable `name`, or `default` when it is unset (or not readable).
---@param name string
---@param default string|nil
---@return string|nil
function ep.env(name, default)
  local v = host.env(name)
  if v == nil then return default end
  return v
end

local CALL_OPTIONS = { timeout_ms = true, upstream = true }

--- Calls a service and waits for its answer; other jobs run meanwhile. Without `upstream`
--- the call goes through this process's own balancer when it listens, else through the
--- balancers it pulls from; with `upstream`, to that other cluster (see `ep.upstream`).
--- `timeout_ms` bounds the wait (default: the balancer's). Only inside a handler or a timer
--- callback (also a control script's). Returns the reply body and status, or `nil`, an
--- error message and its kind (`"timeout"`, `"overloaded"`, `"no_service"`,
--- `"worker_lost"`, `"handler_error"`, `"unavailable"`, …).
---@param service string
---@param body? string
---@param opts? { timeout_ms?: number, upstream?: string }
---@return string|nil body
---@return integer|string status_or_message
---@return string? kind
function ep.call(service, body, opts)
  if type(service) ~= "string" then
    error(format("bad argument #1 to 'ep.call' (string expected, got %s)", type(service)), 2)
  end
  local timeout, upstream = 0, nil
  if opts ~= nil then
    if type(opts) ~= "table" then
      error(format("bad argument #3 to 'ep.call' (table expected, got %s)", type(opts)), 2)
    end
    for k in pairs(opts) do
      if not CALL_OPTIONS[k] then
        error(format("bad option '%s' to 'ep.call' (unknown option)", oneline(k)), 2)
      end
    end
    timeout = opts.timeout_ms or 0
    if type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout then
      error(format("bad option 'timeout_ms' to 'ep.call' (non-negative number expected, got %s)",
        type(timeout)), 2)
    end
    upstream = opts.upstream
    if upstream ~= nil and type(upstream) ~= "string" then
      error(format("bad option 'upstream' to 'ep.call' (string expected, got %s)", type(upstream)), 2)
    end
  end
  if not host.managed() then
    error("ep.call is only available inside a handler or a timer callback", 2)
  end
  local ok, a, b = yield("call", service, body == nil and "" or tostring(body), timeout, upstream)
  if ok then return b, a end
  return nil, b, a
end

-- For the control layer (lua/control.ts, control.lua); not part of the public API: its host
-- functions, and whether Lua runs in ep's own coroutine of a call (where control.lua's
-- ep.exit ends a timer callback by yielding).
ep._ext = host.ext
ep._managed = host.managed

---------------------------------------------------------------------------------------
-- require: modules are read through the host (wasmoon's own io sees an in-memory file
-- system, not the disk), relative to the script directory.

local script_dir = host.script_dir
if script_dir then
  package.path = script_dir .. "/?.lua;" .. script_dir .. "/?/init.lua"
else
  package.path = ""
end
package.cpath = ""

local read_module = host.read_module

local function search_script_dir(name)
  if script_dir == nil then return "\n\tno script directory for module '" .. name .. "'" end
  local rel = gsub(name, "%.", "/")
  if find(rel, "//", 1, true) or sub(rel, 1, 1) == "/" or sub(rel, -1) == "/" or find(rel, "\\", 1, true) then
    return "\n\tinvalid module name '" .. name .. "'"
  end
  local tried = {}
  for _, candidate in ipairs({ rel .. ".lua", rel .. "/init.lua" }) do
    local source = read_module(candidate)
    if source then
      local chunk, err = load(source, "=" .. candidate, "t")
      if not chunk then error(err, 0) end
      return chunk, candidate
    end
    tried[#tried + 1] = "\n\tno file '" .. candidate .. "'"
  end
  return concat(tried)
end

-- package.preload first, then the script directory; the standard Lua and C searchers
-- would only look at the in-memory file system, so they go.
local searchers = package.searchers
for i = #searchers, 2, -1 do searchers[i] = nil end
searchers[2] = search_script_dir

package.loaded.ep = ep
_G.ep = ep

---------------------------------------------------------------------------------------
-- The sandbox. ep's controls over a handler are the interrupt hook (its timeout), the
-- memory cap of the Lua state, and engine health; handler code must not be able to switch
-- them off, run where they cannot reach, or leave the engine broken for later requests.
-- Reference: lua/API.md, "Sandbox". The engine's side: lua/engine.ts (#hook, #finish)
-- and lua/_guard.ts (the guard table).
--
-- What stays as it is: the globals and standard tables are shared by the services of an
-- engine, and a service may change them for the others (that is one project's code); ep's
-- own functions above use locals captured before any handler ran.

-- debug: only read-only introspection. sethook/gethook would remove or replace ep's
-- interrupt hook; getregistry reaches ep's coroutines, refs and the main thread;
-- setlocal, setupvalue, upvaluejoin, getupvalue reach into ep.lua's closures; set/get
-- metatable and uservalue bypass __metatable and reach metatables of any type (a __gc on
-- them would run where no hook reaches); debug.debug reads stdin.
local real_debug = debug
local getmetatable_raw = real_debug.getmetatable
local safe_debug = {
  traceback = real_debug.traceback,
  getinfo = real_debug.getinfo,
  getlocal = real_debug.getlocal,
}
debug = safe_debug
package.loaded.debug = safe_debug

-- io, and os beyond the clock: wasmoon's io writes to an in-memory file system whose files
-- live outside the memory cap (and reads stdin); os.exit throws out of the wasm module and
-- breaks the engine; os.execute, remove, rename, tmpname, setlocale touch the process.
local real_os = os
os = {
  clock = real_os.clock,
  date = real_os.date,
  difftime = real_os.difftime,
  getenv = real_os.getenv,
  time = real_os.time,
}
package.loaded.os = os
io = nil
package.loaded.io = nil
loadfile, dofile = nil, nil -- files of that in-memory file system; require reads real ones
package.loadlib = nil

-- load: text chunks only. Lua does not verify bytecode: a crafted binary chunk can crash
-- the VM (string.dump stays: without binary load it is harmless).
_G.load = function(chunk, chunkname, mode, ...)
  if mode ~= nil and not (type(mode) == "string" and find(mode, "t", 1, true)) then
    error("bad argument #3 to 'load' (binary chunks are not allowed in ep)", 2)
  end
  if select("#", ...) > 0 then return load(chunk, chunkname, "t", ...) end -- env given, even nil
  return load(chunk, chunkname, "t")
end

-- collectgarbage: the collector cannot be stopped or retuned for the whole engine (later
-- requests, other services); a collection, a step and the count are fine.
local real_collectgarbage = collectgarbage
local GC_OPTIONS = { collect = true, count = true, step = true, isrunning = true, restart = true }
function collectgarbage(opt, ...)
  if opt ~= nil and not GC_OPTIONS[opt] then
    error(format("bad argument #1 to 'collectgarbage' (option \"%s\" is not allowed in ep)", oneline(opt)), 2)
  end
  return real_collectgarbage(opt, ...)
end

-- setmetatable: no __gc. Finalizers run inside the collector with hooks off, at any later
-- moment (another request, ep's own calls), so a finalizer could run forever. Lua marks
-- an object for finalization only if its metatable has a __gc field when it is set, so a
-- __gc added later is never called.
_G.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("bad argument #2 to 'setmetatable' (__gc metamethods are not allowed in ep)", 2)
  end
  return setmetatable(t, mt)
end

-- coroutines. A coroutine gets its hook from the thread that creates it, so every
-- coroutine has ep's hook. Two kinds of threads are off limits (the engine marks them in
-- `guard`): the coroutines ep runs calls in (resuming or closing one would hijack another
-- request), and threads ep's interrupt cut short, whose hooks Lua left off: resuming one,
-- or closing it (which runs its to-be-closed variables), would run code no hook stops.
local guard = host.guard
local co_create, co_resume, co_close = coroutine.create, coroutine.resume, coroutine.close
local co_status = coroutine.status

function coroutine.resume(co, ...)
  if guard[co] ~= nil then return false, "cannot resume a coroutine that ep runs or interrupted" end
  return co_resume(co, ...)
end

function coroutine.close(co)
  if guard[co] ~= nil then return false, "cannot close a coroutine that ep runs or interrupted" end
  return co_close(co)
end

-- coroutine.wrap as in C (lua 5.4.6 auxwrap), but a coroutine ep cut short is not closed.
local function wrap_result(co, ok, ...)
  if ok then return ... end
  local err = ...
  if guard[co] == nil and co_status(co) == "dead" then
    local closed, cerr = co_close(co) -- an error inside: close its to-be-closed variables
    if not closed then err = cerr end
  end
  if type(err) == "string" then error(err, 2) end -- with the caller's position
  error(err, 0)
end

function coroutine.wrap(f)
  local co = co_create(f)
  return function(...) return wrap_result(co, co_resume(co, ...)) end
end

-- xpcall: when ep's interrupt raises its error, Lua calls the message handler with hooks
-- off; then the handler's own is skipped.
local real_xpcall, interrupting = xpcall, host.interrupting
function xpcall(f, msgh, ...)
  if type(msgh) ~= "function" then return real_xpcall(f, msgh, ...) end
  return real_xpcall(f, function(e)
    if interrupting() then return e end
    return msgh(e)
  end, ...)
end

-- C functions that loop without allocating, where no hook reaches and the memory cap does
-- not bound the time: split or short-cut them. (String searches stay: see lua/API.md.)
local real_rep = string.rep
function string.rep(s, n, sep)
  if s == "" and (sep == nil or sep == "") then
    -- Empty result, but C would still loop n times.
    return real_rep(s, tonumber(n) and 1 or n)
  end
  return real_rep(s, n, sep)
end

local CHUNK = 1 << 16
local real_move = table.move
function table.move(a1, f, e, t, a2)
  local fi, ei, ti = tointeger(f), tointeger(e), tointeger(t)
  if not (fi and ei and ti and fi >= 1 and ei - fi >= CHUNK and ti <= maxinteger - (ei - fi)) then
    return real_move(a1, f, e, t, a2)
  end
  local dest = a2
  if dest == nil then dest = a1 end
  if ti > fi and ti <= ei and (a2 == nil or a1 == a2) then
    -- Overlapping upwards: the last chunk first, as C moves the last element first.
    for ce = ei, fi, -CHUNK do
      local cf = (ce - fi < CHUNK) and fi or ce - CHUNK + 1
      real_move(a1, cf, ce, ti + (cf - fi), dest)
    end
  else
    for cf = fi, ei, CHUNK do
      local ce = (ei - cf < CHUNK) and ei or cf + CHUNK - 1
      real_move(a1, cf, ce, ti + (cf - fi), dest)
    end
  end
  return dest
end

-- table.insert(t, pos, v) and table.remove(t, pos) shift elements up to #t: with a __len
-- that claims a huge length that is a C loop over nothing. With a __len, shift in Lua.
local real_insert, real_remove = table.insert, table.remove
local function has_len(t)
  local mt = getmetatable_raw(t)
  return mt ~= nil and rawget(mt, "__len") ~= nil
end

local function check_pos(pos, fname)
  local p = tointeger(pos)
  if p == nil then
    error(format("bad argument #2 to '%s' (number has no integer representation)", fname), 3)
  end
  return p
end

local function length(t)
  local n = tointeger(#t)
  if n == nil then error("object length is not an integer", 3) end
  return n
end

function table.insert(t, ...)
  if select("#", ...) ~= 2 or not has_len(t) then return real_insert(t, ...) end
  local pos, v = ...
  local e = length(t) + 1
  pos = check_pos(pos, "insert")
  if not ult(pos - 1, e) then error("bad argument #2 to 'insert' (position out of bounds)", 2) end
  for i = e, pos + 1, -1 do t[i] = t[i - 1] end
  t[pos] = v
end

function table.remove(t, ...)
  if not has_len(t) then return real_remove(t, ...) end
  local size = length(t)
  local pos = ...
  if pos == nil then pos = size else pos = check_pos(pos, "remove") end
  if pos ~= size and not (ult(pos - 1, size) or pos - 1 == size) then
    error("bad argument #2 to 'remove' (position out of bounds)", 2)
  end
  local v = t[pos]
  for i = pos, size - 1 do t[i] = t[i + 1] end
  if pos <= size then t[size] = nil else t[pos] = nil end
  return v
end

return fire
