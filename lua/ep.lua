-- The `ep` module seen by service handlers: the friendly API, written in Lua on top of the
-- thin host table the engine passes in (lua/engine.ts, `#makeHost`). Reference with
-- examples: lua/API.md. The annotations are for LuaLS-aware editors.
--
-- Loaded once per engine as chunk "=ep.lua" with the host table as its argument; sets
-- `package.loaded.ep` and the global `ep`, installs the `require` searcher and redirects
-- `print` to the log; returns the timer dispatcher the engine calls.

local host = ...

local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select
local setmetatable, getmetatable = setmetatable, getmetatable
local concat = table.concat
local yield = coroutine.yield

---@class ep
local ep = {}

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

local function check_ms(name, ms)
  local n = tonumber(ms)
  if n == nil or n ~= n or n < 0 or n == math.huge then
    error(("bad argument #1 to '%s' (milliseconds expected, got %s)"):format(name, tostring(ms)), 3)
  end
  return n
end

--- Suspends the calling handler (or timer callback) for `ms` milliseconds; other jobs
--- run meanwhile. Only inside a handler or a timer callback, not in a coroutine of its own.
---@param ms number
function ep.sleep(ms)
  local start = host_now()
  local n = check_ms("ep.sleep", ms)
  if not host.managed() then
    error("ep.sleep is only available inside a handler or a timer callback", 2)
  end
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
    error(("bad argument #2 to '%s' (function expected, got %s)"):format(name, type(fn)), 3)
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
    error(("bad argument #1 to 'ep.json.array' (table expected, got %s)"):format(type(t)), 2)
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

--- Calls another service through the balancer and waits for its answer; other jobs run
--- meanwhile. Only inside a handler or a timer callback.
--- Returns the reply body and status, or `nil`, an error message and its kind
--- (`"timeout"`, `"overloaded"`, `"no_service"`, `"worker_lost"`, `"unavailable"`, …).
---@param service string
---@param body? string
---@param opts? { timeout_ms?: number }
---@return string|nil body
---@return integer|string status_or_message
---@return string? kind
function ep.call(service, body, opts)
  if type(service) ~= "string" then
    error(("bad argument #1 to 'ep.call' (string expected, got %s)"):format(type(service)), 2)
  end
  if not host.managed() then
    error("ep.call is only available inside a handler or a timer callback", 2)
  end
  local timeout = opts and opts.timeout_ms or 0
  local ok, a, b = yield("call", service, body == nil and "" or tostring(body), timeout)
  if ok then return b, a end
  return nil, b, a
end

-- Host functions for the control layer (lua/control.ts); not part of the public API.
ep._ext = host.ext

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
  local rel = name:gsub("%.", "/")
  if rel:find("//", 1, true) or rel:sub(1, 1) == "/" or rel:sub(-1) == "/" or rel:find("\\", 1, true) then
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

return fire
