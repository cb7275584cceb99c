-- choreo.saga: process managers (sagas) on top of choreo.on, ctx.db and ctx:timeout.
--
-- A saga instance is identified by (saga name, correlation key). Its state is a plain Lua table
-- kept by the engine (choreo.sagastore, over the choreo_sagas table), read before and written
-- after each message in that message's transaction, so state, emitted messages and timeouts
-- commit together or not at all. Messages for one host are handled one at a time, so two
-- messages for an instance never interleave. Timeouts set through the saga's ctx carry the
-- instance in their subject and come back to it.

local store = require "choreo.sagastore"

local SUBJECT_PREFIX = "saga:"

return function(choreo)
  local defined = {}

  local function subject_of(name, key)
    return SUBJECT_PREFIX .. name .. ":" .. key
  end

  local function check_definition(name, def)
    if type(name) ~= "string" or name == "" or name:find(":", 1, true) then
      error("choreo.saga: the name must be a non-empty string without ':'", 3)
    end
    if defined[name] then error("choreo.saga: '" .. name .. "' is defined twice", 3) end
    if type(def) ~= "table" then error("choreo.saga " .. name .. ": definition must be a table", 3) end
    if type(def.on) ~= "table" or next(def.on) == nil then
      error("choreo.saga " .. name .. ": 'on' must map message types to handlers", 3)
    end
    for msg_type, handler in pairs(def.on) do
      if type(handler) ~= "function" then
        error("choreo.saga " .. name .. ": handler for '" .. tostring(msg_type) .. "' is not a function", 3)
      end
    end
    if type(def.starts) ~= "table" or #def.starts == 0 then
      error("choreo.saga " .. name .. ": 'starts' must list the message types that start it", 3)
    end
    for _, msg_type in ipairs(def.starts) do
      if not def.on[msg_type] then
        error("choreo.saga " .. name .. ": starts with '" .. tostring(msg_type) .. "' but has no handler for it", 3)
      end
    end
    if def.correlate ~= nil and type(def.correlate) ~= "table" then
      error("choreo.saga " .. name .. ": 'correlate' must be a table", 3)
    end
    for msg_type, how in pairs(def.correlate or {}) do
      if not def.on[msg_type] then
        error("choreo.saga " .. name .. ": correlate entry for '" .. tostring(msg_type) .. "' has no handler", 3)
      end
      if type(how) ~= "string" and type(how) ~= "function" then
        error("choreo.saga " .. name .. ": correlate entry for '" .. msg_type .. "' must be a field name or a function", 3)
      end
    end
    if def.version ~= nil and math.type(def.version) ~= "integer" then
      error("choreo.saga " .. name .. ": 'version' must be an integer", 3)
    end
    if def.migrate ~= nil and type(def.migrate) ~= "function" then
      error("choreo.saga " .. name .. ": 'migrate' must be a function", 3)
    end
    if def.retry ~= nil and type(def.retry) ~= "table" then
      error("choreo.saga " .. name .. ": 'retry' must be a table like { attempts = 3, backoff = { 1, 5, 30 } }", 3)
    end
  end

  -- The instance key of a message: from its subject for the saga's own timeouts, else from
  -- the correlate entry. A missing or non-scalar key is an error: the message fails and is
  -- retried, then dead-lettered.
  local function key_of(name, def, msg)
    if msg.kind == "timeout" then
      local prefix = subject_of(name, "")
      if msg.subject and msg.subject:sub(1, #prefix) == prefix then return msg.subject:sub(#prefix + 1) end
      return nil, true -- a timeout for someone else
    end
    local how = def.correlate and def.correlate[msg.type]
    if how == nil then
      error("saga " .. name .. ": no correlate entry for '" .. msg.type .. "'", 0)
    end
    local key
    if type(how) == "function" then key = how(msg) else key = type(msg.data) == "table" and msg.data[how] or nil end
    local kind = type(key)
    if kind == "number" then
      key = math.type(key) == "integer" and string.format("%d", key) or tostring(key)
    elseif kind ~= "string" or key == "" then
      error("saga " .. name .. ": correlation key for '" .. msg.type .. "' is " ..
        (key == nil and "nil" or "a " .. kind) .. " (need a string or number)", 0)
    end
    return key
  end

  local function saga_ctx(ctx, name, key)
    local sctx = { db = ctx.db, log = ctx.log, completed = false, key = key, saga = name }
    function sctx.publish(_, ...) return ctx:publish(...) end
    function sctx.send(_, ...) return ctx:send(...) end
    function sctx.reply(_, ...) return ctx:reply(...) end
    function sctx.timeout(_, seconds, msg_type, data)
      return ctx:timeout(seconds, msg_type, data, { subject = subject_of(name, key) })
    end
    function sctx.complete(self) self.completed = true end
    return sctx
  end

  local function handle(name, def, msg, ctx)
    local key, not_ours = key_of(name, def, msg)
    if not_ours then return end
    local version = def.version or 1
    local state, stored_version = store.load(name, key)
    if state ~= nil then
      if stored_version ~= version and def.migrate then
        state = def.migrate(state, stored_version) or state
      end
    elseif msg.kind ~= "timeout" and def.starts_set[msg.type] then
      state = {}
    else
      ctx.log.info("saga", name, "has no instance", key, "for", msg.type, "- ignored")
      store.miss(name, msg.type)
      return
    end
    local sctx = saga_ctx(ctx, name, key)
    def.on[msg.type](state, msg, sctx)
    if sctx.completed then
      store.remove(name, key)
      ctx:cancel_timeouts(subject_of(name, key))
    else
      store.save(name, key, state, version)
    end
  end

  -- choreo.saga(name, { starts = {...}, correlate = {...}, on = {...}[, version, migrate, retry] })
  -- retry is the retry policy of every message the saga takes, as in choreo.on's options.
  function choreo.saga(name, def)
    check_definition(name, def)
    def.starts_set = {}
    for _, msg_type in ipairs(def.starts) do def.starts_set[msg_type] = true end
    defined[name] = def
    for msg_type in pairs(def.on) do
      local ok, err = pcall(choreo.on, msg_type, function(msg, ctx) handle(name, def, msg, ctx) end,
                            def.retry)
      if not ok then
        error("choreo.saga " .. name .. ": " .. tostring(err):gsub("^choreo%.on: ", ""), 2)
      end
    end
  end
end
