-- choreo.projection: read models kept by handlers in tables of their own, on top of choreo.on
-- and the projections the engine keeps (runtime/core/projections.c, through
-- choreo.projectionstore).
--
-- Live, a projection's handlers are ordinary handlers: they write its tables in the
-- transaction of the event they handle, as long as those tables are of the version this code
-- declares. Each message they take that is not one of this host's stream events is kept for
-- builds (store.keep). When the tables are not of the declared version, or when asked to, the
-- host builds that version from the first event of this host's streams and of what was kept,
-- into tables of a file of its own, then
-- puts them in place of the live ones in one transaction. The host runs a build's handlers
-- through `project` below, with a db object over the build's file. Until the swap, the
-- generation of scripts from before the reload stays: it answers the queries, and through
-- `deliver_stale` its handlers keep the old tables up to date.

local store = require "choreo.projectionstore"

return function(choreo)
  local projections = {} -- name -> { name =, version =, tables =, on =, types = }, for the host
  local order = {}

  local function check(name, def)
    if type(name) ~= "string" or not name:match("^[%w_.-]+$") or #name > 100 then
      error("choreo.projection: the name must be 1 to 100 letters, digits, '_', '-' or '.'", 3)
    end
    if projections[name] then error("choreo.projection: '" .. name .. "' is defined twice", 3) end
    local function fail(why) error("choreo.projection " .. name .. ": " .. why, 4) end
    if type(def) ~= "table" then fail("the definition must be a table") end
    if math.type(def.version) ~= "integer" or def.version < 1 then
      fail("'version' must be an integer, 1 or more (change it to rebuild the tables)")
    end
    local tables = def.tables
    if type(tables) == "table" then
      for i, sql in ipairs(tables) do
        if type(sql) ~= "string" then fail("'tables' entry " .. i .. " must be SQL text") end
      end
      tables = table.concat(tables, ";\n")
    end
    if type(tables) ~= "string" or tables:match("^%s*$") then
      fail("'tables' must be the SQL that creates its tables (a string or a list of them)")
    end
    if type(def.on) ~= "table" or next(def.on) == nil then
      fail("'on' must map event types to functions(msg, db)")
    end
    for t, fn in pairs(def.on) do
      if type(t) ~= "string" or type(fn) ~= "function" then
        fail("'on' must map event types to functions(msg, db) (see '" .. tostring(t) .. "')")
      end
      if t:find("*", 1, true) then
        fail("'on' names event types, not patterns ('" .. t .. "'): a rebuild replays events by type")
      end
    end
    return tables
  end

  -- choreo.projection(name, { version = N, tables = "create table ...", on = { Type = fn(msg, db) } })
  function choreo.projection(name, def)
    local tables = check(name, def)
    local types = {}
    for event_type in pairs(def.on) do types[#types + 1] = event_type .. "\n" end
    table.sort(types)
    -- types: what retention keeps the inputs of (runtime/core/projections.c)
    local entry = { name = name, version = def.version, tables = tables, on = def.on,
                    types = table.concat(types) }
    projections[name] = entry
    order[#order + 1] = entry
    for event_type, fn in pairs(def.on) do
      choreo.on(event_type, function(msg, ctx)
        store.keep() -- for builds, unless it is one of this host's stream events
        if store.applies(name, entry.version) then fn(msg, ctx.db) end
      end)
    end
  end

  local hooks = {}

  function hooks.list() return order end

  function hooks.deliver_stale(msg, ctx)
    for _, entry in ipairs(order) do
      local fn = entry.on[msg.type]
      if fn and store.stale(entry.name, entry.version) then fn(msg, ctx.db) end
    end
  end

  function hooks.project(name, msg, db)
    local entry = projections[name]
    local fn = entry and entry.on[msg.type]
    if fn then fn(msg, db) end
  end

  return hooks
end
