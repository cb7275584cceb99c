-- choreo.aggregate, choreo.upcast, ctx:load and ctx:append: event sourcing on top of choreo.on
-- and the streams the engine keeps (choreo.streamstore, over choreo_streams and
-- choreo_snapshots).
--
-- An aggregate's state is never stored as such: it is the fold of its stream's events
-- (`evolve`), from the latest snapshot on. A command to it is decided on that state
-- (`decide`), and the events decided are appended to the stream in the command's transaction,
-- so stream, snapshot, emitted messages and checkpoint commit together or not at all. Each
-- event records its data's schema version (dataschema "v<N>"); upcasters bring old shapes up
-- to the current one whenever events are read, and before any handler on this host sees one.

local store = require "choreo.streamstore"

return function(choreo, ctx)
  local aggregates = {} -- name -> definition
  local decided_by = {} -- command type -> aggregate name
  local upcasters = {}  -- event type -> { [from version] = fn }
  local current = {}    -- event type -> its current schema version (1 when never upcast)

  local schemas = {}    -- event type -> "v<N>", its current version as written
  local function schema_of(event_type)
    local schema = schemas[event_type]
    if schema == nil then
      schema = "v" .. (current[event_type] or 1)
      schemas[event_type] = schema
    end
    return schema
  end

  -- Brings msg.data from its schema version up to the type's current one, in place. An event
  -- without a dataschema (a spec's host:given) is taken as the current shape.
  local function upcast(msg)
    local chain = upcasters[msg.type]
    if chain == nil or msg.dataschema == nil then return end
    local target = current[msg.type]
    local where = msg.streamversion and ("%s event %d"):format(msg.subject, msg.streamversion) or msg.id
    local v = math.tointeger(tonumber(tostring(msg.dataschema):match("^v(%d+)$")))
    if v == nil then
      error(("%s (%s): dataschema '%s' is not v<N>"):format(where, msg.type, tostring(msg.dataschema)), 0)
    end
    if v > target then
      error(("%s (%s) has schema v%d, newer than this code knows (v%d)"):format(where, msg.type, v, target), 0)
    end
    while v < target do
      local fn = chain[v]
      if fn == nil then
        error(("%s (%s) has schema v%d and no upcaster from v%d is declared"):format(where, msg.type, v, v), 0)
      end
      local ok, data = pcall(fn, msg.data)
      if not ok then
        error(("upcaster of %s from v%d failed on %s: %s"):format(msg.type, v, where, tostring(data)), 0)
      end
      msg.data = data
      v = v + 1
    end
    msg.dataschema = "v" .. target
  end

  -- choreo.upcast(type, from_version, fn): fn(data) returns the data of version from + 1.
  function choreo.upcast(event_type, from, fn)
    if type(event_type) ~= "string" or event_type == "" then
      error("choreo.upcast: the event type must be a non-empty string", 2)
    end
    if math.type(from) ~= "integer" or from < 1 then
      error("choreo.upcast " .. event_type .. ": the version upgraded from must be an integer, 1 or more", 2)
    end
    if type(fn) ~= "function" then error("choreo.upcast " .. event_type .. ": the upcaster must be a function", 2) end
    local chain = upcasters[event_type] or {}
    if chain[from] then
      error(("choreo.upcast %s: an upcaster from v%d is declared twice"):format(event_type, from), 2)
    end
    chain[from] = fn
    upcasters[event_type] = chain
    current[event_type] = math.max(current[event_type] or 1, from + 1)
    schemas[event_type] = nil
  end

  local function check_definition(name, def)
    if type(name) ~= "string" or name == "" or name:find("/", 1, true) then
      error("choreo.aggregate: the name must be a non-empty string without '/'", 3)
    end
    if aggregates[name] then error("choreo.aggregate: '" .. name .. "' is defined twice", 3) end
    local function fail(why) error("choreo.aggregate " .. name .. ": " .. why, 4) end
    if type(def) ~= "table" then fail("the definition must be a table") end
    if def.initial ~= nil and type(def.initial) ~= "function" then fail("'initial' must be a function") end
    for _, part in ipairs({ "decide", "evolve" }) do
      if type(def[part]) ~= "table" then fail("'" .. part .. "' must map message types to functions") end
      for t, fn in pairs(def[part]) do
        if type(t) ~= "string" or type(fn) ~= "function" then
          fail("'" .. part .. "' must map message types to functions (see '" .. tostring(t) .. "')")
        end
      end
    end
    if next(def.decide) == nil then fail("'decide' handles no command") end
    for t in pairs(def.decide) do
      if decided_by[t] then fail("'" .. t .. "' is decided by " .. decided_by[t] .. " already") end
    end
    if def.snapshot_every ~= nil and (math.type(def.snapshot_every) ~= "integer" or def.snapshot_every < 1) then
      fail("'snapshot_every' must be an integer, 1 or more")
    end
    if def.version ~= nil and math.type(def.version) ~= "integer" then fail("'version' must be an integer") end
    if def.id ~= nil and type(def.id) ~= "string" and type(def.id) ~= "function" then
      fail("'id' must name a field of the command's data, or be a function of the command")
    end
    if def.retry ~= nil and type(def.retry) ~= "table" then
      fail("'retry' must be a table like { attempts = 3, backoff = { 1, 5, 30 } }")
    end
  end

  -- Names the code that folds the streams: a snapshot taken by other code is not used.
  local function fingerprint(name, def)
    local parts = { name, tostring(def.version or 1) }
    local types = {}
    for t in pairs(def.evolve) do types[#types + 1] = t end
    table.sort(types)
    local function code(fn)
      local ok, dumped = pcall(string.dump, fn, true)
      return ok and dumped or tostring(fn)
    end
    for _, t in ipairs(types) do parts[#parts + 1] = t .. "=" .. code(def.evolve[t]) end
    if def.initial then parts[#parts + 1] = "initial=" .. code(def.initial) end
    return store.fingerprint(table.concat(parts, "\0"))
  end

  local function id_text(id)
    if math.type(id) == "integer" then return string.format("%d", id) end
    if type(id) == "string" and id ~= "" then return id end
    return nil
  end

  -- Folded states stay in memory, so a command to a busy stream folds only what came since
  -- the last one: two generations of up to CACHE_STATES streams each, the older dropped when
  -- the younger fills (streams in use stay young). A state is good only under the epoch it was
  -- folded in: any rollback may have undone its events.
  local CACHE_STATES = 10000
  local young, old, young_count = {}, {}, 0

  local function cache_take(stream)
    local c = young[stream]
    if c then
      young[stream], young_count = nil, young_count - 1
    else
      c = old[stream]
      old[stream] = nil
    end
    return c
  end

  local function cache_put(stream, c)
    if young_count >= CACHE_STATES then old, young, young_count = young, {}, 0 end
    young[stream], young_count = c, young_count + 1
  end

  -- One stored event folded into state: the state evolve returned, or state itself.
  local function evolved(name, def, stream, state, e)
    upcast(e)
    local fn = def.evolve[e.type]
    if fn == nil then
      error(("%s: event %d is a %s, which %s's evolve does not know"):format(stream, e.streamversion, e.type, name), 0)
    end
    local ok, new = pcall(fn, state, e)
    if not ok then
      error(("%s: evolve of %s (event %d) failed: %s"):format(stream, e.type, e.streamversion, tostring(new)), 0)
    end
    if new ~= nil then return new end
    return state
  end

  -- The state of a stream and its version: the cached state, or the snapshot, then every
  -- later event folded in. A cached state is the stream's last: this host appends to a stream
  -- only through this file, which folds what a command appended at once (fold_appended) and
  -- forgets what ctx:append did; an append outside a handler (choreo.testing's given) changes
  -- the epoch. A snapshot is taken once snapshot_every events were folded past the last one,
  -- here or as a command appended them.
  -- The state returned is the cached one: callers must not change it.
  local function fold(name, def, stream)
    local epoch = store.epoch()
    local c = cache_take(stream) -- taken out while folding: an evolve that raises leaves it out
    local state, version, snapped
    if c and c.epoch == epoch then
      state, version, snapped = c.state, c.version, c.snapped
    else
      c = nil
      state, version = store.snapshot_load(stream, def.fingerprint)
      if state == nil then
        state, version = def.initial and def.initial() or {}, 0
      end
      snapped = version
      store.each(stream, version, function(e)
        state = evolved(name, def, stream, state, e)
        version = e.streamversion
      end)
    end
    if def.snapshot_every and version - snapped >= def.snapshot_every then
      store.snapshot_save(stream, version, def.fingerprint, state)
      snapped = version
    end
    -- Under the epoch the fold began in: had it changed meanwhile, the next fold starts over.
    if c then
      c.state, c.version, c.snapped = state, version, snapped
    else
      c = { state = state, version = version, snapped = snapped, epoch = epoch }
    end
    cache_put(stream, c)
    return state, version
  end

  -- Folds the events a command appended (as stored) into the state it was decided on, folded
  -- up to `version` just before, and caches the result, snapshotting it as fold does. An
  -- evolve that raises fails the command, so its events are not appended: a command never
  -- leaves its stream with one its aggregate cannot fold.
  local function fold_appended(name, def, stream, state, version, events)
    local c = cache_take(stream) -- out while folding, as in fold
    for _, e in ipairs(events) do state = evolved(name, def, stream, state, e) end
    if c and c.epoch == store.epoch() and c.version == version then
      c.state, c.version = state, events[#events].streamversion
      if def.snapshot_every and c.version - c.snapped >= def.snapshot_every then
        store.snapshot_save(stream, c.version, def.fingerprint, state)
        c.snapped = c.version
      end
      cache_put(stream, c)
    end
  end

  -- A copy of a state for a handler to keep or change (plain values and tables only: a state
  -- can be snapshotted, so it holds nothing else).
  local function copy(v)
    if type(v) ~= "table" then return v end
    local out = {}
    for k, x in pairs(v) do out[k] = copy(x) end
    return out
  end

  -- The events decide returned, as the store takes them; a clear error for anything else.
  -- The events as the store takes them, each with its type's current schema. untyped(i) is
  -- called for an event without a type, known(ev) for each (it may raise).
  local function stored(events, untyped, known)
    local list = {}
    for i, ev in ipairs(events) do
      if type(ev) ~= "table" or type(ev.type) ~= "string" or ev.type == "" then untyped(i) end
      if known then known(ev) end
      list[i] = { type = ev.type, data = ev.data, schema = schema_of(ev.type) }
    end
    return list
  end

  local function checked_events(name, def, command, events)
    local function fail(why)
      error(("%s: decide of %s %s"):format(name, command, why), 0)
    end
    if type(events) ~= "table" then fail("returned a " .. type(events) .. ", not a list of events") end
    local n = 0
    for _ in pairs(events) do n = n + 1 end
    if n ~= #events then fail("returned a table that is not a list of events") end
    return stored(events, function(i)
      fail(("returned an event %d without a type (events are { type = ..., data = ... })"):format(i))
    end, function(ev)
      if def.evolve[ev.type] == nil then fail(("returned a %s event, which evolve does not know"):format(ev.type)) end
    end)
  end

  -- The stream a command is for: its subject, or the id its data names (def.id).
  local function stream_of(name, def, msg)
    local prefix = name .. "/"
    if msg.subject then
      if msg.subject:find(prefix, 1, true) ~= 1 or #msg.subject == #prefix then
        error(("%s: the subject '%s' of %s %s is not a stream of %s (%s<id>)"):format(
          name, msg.subject, msg.type, msg.id, name, prefix), 0)
      end
      return msg.subject
    end
    local id
    if type(def.id) == "function" then
      id = def.id(msg)
    elseif def.id then
      id = type(msg.data) == "table" and msg.data[def.id] or nil
    end
    local text = id_text(id)
    if text == nil then
      error(("%s: %s %s names no stream: give it the subject %s<id>%s"):format(name, msg.type, msg.id, prefix,
        def.id and (type(def.id) == "string" and " or the data field '" .. def.id .. "'" or " or what 'id' reads") or ""), 0)
    end
    return prefix .. text
  end

  local function reject(c, msg, stream, reason, version)
    c:reply("CommandRejected", { reason = reason, stream = stream, command = msg.type, version = version })
  end

  local function handle_command(name, def, msg, c)
    if msg.kind ~= "command" then
      c.log.warn(name, "decides commands; the", msg.kind, msg.type, msg.id, "is ignored")
      return
    end
    local stream = stream_of(name, def, msg)
    local state, version = fold(name, def, stream)
    if msg.expectedversion ~= nil and msg.expectedversion ~= version then
      return reject(c, msg, stream, "conflict", version)
    end
    local events, reason = def.decide[msg.type](state, msg)
    if events == nil then
      if type(reason) ~= "string" or reason == "" then
        error(("%s: decide of %s returned nothing: return a list of events, or nil and a reason"):format(
          name, msg.type), 0)
      end
      return reject(c, msg, stream, reason, version)
    end
    local list = checked_events(name, def, msg.type, events)
    if #list == 0 then return end
    local appended, as_stored, at = store.append(stream, version, list, true)
    if appended == nil then -- a state folded from less than the stream: the retry folds anew
      error(("%s: %s is at version %d, not %d as folded"):format(name, stream, at, version), 0)
    end
    fold_appended(name, def, stream, state, version, as_stored)
  end

  -- choreo.aggregate(name, { initial, decide = {...}, evolve = {...}[, snapshot_every, version,
  -- id, retry] })
  function choreo.aggregate(name, def)
    check_definition(name, def)
    def.fingerprint = fingerprint(name, def)
    store.drop_stale(name .. "/", def.fingerprint)
    aggregates[name] = def
    for command in pairs(def.decide) do
      decided_by[command] = name
      local ok, err = pcall(choreo.on, command, function(msg, c) handle_command(name, def, msg, c) end, def.retry)
      if not ok then
        error("choreo.aggregate " .. name .. ": " .. tostring(err):gsub("^choreo%.on: ", ""), 2)
      end
    end
  end

  -- ctx:load(aggregate, id) -> state, version
  function ctx.load(_, name, id)
    local def = aggregates[name]
    if def == nil then error("ctx:load: no aggregate named '" .. tostring(name) .. "'", 2) end
    local text = id_text(id)
    if text == nil then error("ctx:load: the id must be a non-empty string or an integer", 2) end
    local state, version = fold(name, def, name .. "/" .. text)
    return copy(state), version
  end

  -- ctx:append(stream, events[, { expect = N }]) -> version, or nil, "conflict"
  function ctx.append(_, stream, events, opts)
    if type(stream) ~= "string" or stream == "" then error("ctx:append: the stream must be a non-empty string", 2) end
    if type(events) ~= "table" or #events == 0 then error("ctx:append: events must be a non-empty list", 2) end
    local expect = opts and opts.expect
    if expect ~= nil and (math.type(expect) ~= "integer" or expect < 0) then
      error("ctx:append: 'expect' must be a stream version, an integer 0 or more", 2)
    end
    local list = stored(events, function(i) -- level 4: the caller of ctx:append
      error(("ctx:append: event %d has no type (events are { type = ..., data = ... })"):format(i), 4)
    end)
    -- The state folded so far is behind once anything is appended, even in part (an append
    -- that fails midway keeps the events before, should the handler catch the error): the
    -- next fold reads the stream.
    cache_take(stream)
    local version, conflict = store.append(stream, expect, list)
    if version == nil then return nil, conflict end
    return version
  end

  -- What the host calls with every delivered message that carries a dataschema.
  return upcast
end
