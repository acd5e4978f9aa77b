-- Shoal's Lua prelude: Redis 7.0's script environment, built once per Lua state.
-- Runs with the real globals as its environment; given the Rust helpers, returns the
-- globals' read-only view (the scripts' environment) and the function that runs a script.
local rust = ...
local G = _G
local dbg = debug
local type, tostring, error, select, unpack = type, tostring, error, select, unpack
local rawget, rawset, rawnext, rawpcall, rawxpcall = rawget, rawset, next, pcall, xpcall
local setmetatable, getmetatable, setfenv = setmetatable, getmetatable, setfenv
local sub, find, gsub = string.sub, string.find, string.gsub

-- What the scripts may not see.
for _, name in ipairs({'print', 'dofile', 'loadfile', 'getfenv', 'setfenv', 'newproxy',
                       'module', 'require', 'debug', 'os', 'io', 'package'}) do
  rawset(G, name, nil)
end

-- Read-only views: a table's proxy reads through to it and refuses writes, as Redis's
-- read-only tables do ("Attempt to modify a readonly table").
local real = {}
local function refuse() error('Attempt to modify a readonly table', 2) end
local function readonly(t)
  local proxy = setmetatable({}, {__index = t, __newindex = refuse, __metatable = false})
  real[proxy] = t
  return proxy
end

-- Redis's error handler: the error as a table with the script's source and line (the
-- frames of a C function and of this prelude's wrappers are skipped).
local function handler(err)
  local level = 2
  local i = dbg.getinfo(level, 'nSl')
  if i and i.what == 'C' then
    level = level + 1
    i = dbg.getinfo(level, 'nSl')
  end
  while i and i.source == '=shoal' do
    level = level + 1
    i = dbg.getinfo(level, 'nSl')
    if i and i.what == 'C' then
      level = level + 1
      i = dbg.getinfo(level, 'nSl')
    end
  end
  if type(err) == 'userdata' then
    err = rust.errtext(err)
  end
  if type(err) ~= 'table' then
    err = {err = 'ERR ' .. tostring(err)}
  end
  if i then
    err['source'] = i.source
    err['line'] = i.currentline
  end
  return err
end
rawset(G, '__redis__err__handler', handler)

-- `pcall` and `xpcall` as Redis's: an error table of `redis.call` is caught as its text, and
-- a script killed by `SCRIPT KILL` cannot catch its end.
local function caught(ok, ...)
  if not ok then
    if rust.killed() then error((...), 0) end
    local e = (...)
    if type(e) == 'table' and type(rawget(e, 'err')) == 'string' then
      return false, rawget(e, 'err'), select(2, ...)
    end
    if type(e) == 'userdata' then
      local t = rust.errtext(e)
      if type(t) == 'table' then t = t.err end
      return false, t, select(2, ...)
    end
  end
  return ok, ...
end
rawset(G, 'pcall', function(f, ...) return caught(rawpcall(f, ...)) end)
rawset(G, 'xpcall', function(f, h) return caught(rawxpcall(f, h)) end)

-- Raw access and iteration see through the read-only views (Rust guards `rawset` and
-- `setmetatable` with the views returned below).
rawset(G, 'rawget', function(t, k) return rawget(real[t] or t, k) end)
local function next_(t, k) return rawnext(real[t] or t, k) end
rawset(G, 'next', next_)
rawset(G, 'pairs', function(t) return next_, t, nil end)

-- An error table as Redis's `luaPushErrorBuff` makes it from "-CODE msg" or "msg".
local function error_table(e)
  local code, msg = 'ERR', e
  if sub(e, 1, 1) == '-' then
    local space = find(e, ' ', 1, true)
    if space then
      code, msg = sub(e, 2, space - 1), sub(e, space + 1)
    else
      msg = sub(e, 2)
    end
  end
  msg = gsub(gsub(msg, '^[\r\n]+', ''), '[\r\n]+$', '')
  return {err = code .. ' ' .. msg}
end

local redis = {}
redis.call = rust.call
redis.pcall = rust.pcall
redis.error_reply = function(...)
  local e = ...
  if select('#', ...) ~= 1 or type(e) ~= 'string' then
    return error_table('wrong number or type of arguments')
  end
  if sub(e, 1, 1) ~= '-' then e = '-' .. e end
  return error_table(e)
end
redis.status_reply = function(...)
  local s = ...
  if select('#', ...) ~= 1 or type(s) ~= 'string' then
    return error_table('wrong number or type of arguments')
  end
  return {ok = s}
end
redis.sha1hex = rust.sha1hex
redis.log = rust.log
redis.setresp = rust.setresp
redis.set_repl = rust.set_repl
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.acl_check_cmd = rust.acl_check_cmd
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL =
  0, 1, 2, 2, 3
redis.REDIS_VERSION, redis.REDIS_VERSION_NUM = rust.version, rust.version_num
rawset(G, 'redis', redis)

-- Every table reachable from the globals is read-only, the globals too; reading a global
-- that does not exist is an error.
for _, name in ipairs({'redis', 'string', 'math', 'table', 'coroutine', 'bit', 'cjson',
                       'cmsgpack', 'struct'}) do
  local t = rawget(G, name)
  if t ~= nil then rawset(G, name, readonly(t)) end
end
local string_meta = getmetatable('')
string_meta.__index = rawget(G, 'string')
string_meta.__metatable = readonly(string_meta)
local view = readonly(G)
rawset(G, '_G', view)
setmetatable(G, {__index = function(_, name)
  error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
end})
-- Chunks loaded from here on (`loadstring`, `load`) see the view too.
setfenv(0, view)

-- Runs a script: its KEYS and ARGV, then the function under Redis's error handler.
local function run(f, keys, argv)
  rawset(G, 'KEYS', keys)
  rawset(G, 'ARGV', argv)
  return rawxpcall(f, handler)
end

-- Functions (Redis's functions engine): a library's code runs with globals of its own,
-- read-only. While it loads, they show only `redis.register_function`, `redis.log` and the
-- constants (the Rust side points `fmeta.__index` at `load_api`); once loaded, the scripts'
-- globals (`view`). A function is called with its keys and arguments, under the handler.
local function missing(_, name)
  error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
end
local load_redis = {register_function = rust.register_function, log = rust.log,
                    REDIS_VERSION = rust.version, REDIS_VERSION_NUM = rust.version_num}
for _, level in ipairs({'LOG_DEBUG', 'LOG_VERBOSE', 'LOG_NOTICE', 'LOG_WARNING'}) do
  load_redis[level] = redis[level]
end
local load_api = readonly(setmetatable({redis = readonly(setmetatable(load_redis,
                                                                      {__index = missing}))},
                                       {__index = missing}))
local fmeta = {__index = view, __newindex = refuse, __metatable = false}
local fenv = setmetatable({}, fmeta)
local function fcall(f, keys, args)
  return rawxpcall(function() return f(keys, args) end, handler)
end
-- A library's code runs unprotected by the handler: its error is the value raised.
local function load_run(f) return rawpcall(f) end
return view, run, real, fenv, fmeta, load_api, fcall, load_run
