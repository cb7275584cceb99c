-- Handlers for msg_table_spec.lua: the msg table is filled as its fields are first read.
local choreo = require "choreo"

-- The keys pairs() gives, without reading any field first.
choreo.on("ListFields", function(msg, ctx)
  local keys = {}
  for k in pairs(msg) do keys[#keys + 1] = k end
  table.sort(keys)
  local mt = getmetatable(msg)
  ctx:publish("Fields", { keys = keys, metatable = type(mt), empty = next(mt) == nil })
end)

-- A handler's own values stay: a field changed, a field cleared, a field of its own; the next
-- handler of the type gets the same table.
choreo.on("Assign", function(msg, ctx)
  msg.type = "Changed"
  msg.subject = nil
  msg.mine = 42
  rawset(msg, "source", "set raw")
  local listed
  for k, v in pairs(msg) do
    if k == "source" then listed = v end
  end
  ctx:publish("Assigned", { type = msg.type, subject_cleared = msg.subject == nil,
    mine = msg.mine, same_data = msg.data == msg.data, source = listed })
end)
choreo.on("Assign", function(msg, ctx)
  ctx:publish("SecondSaw", { type = msg.type, subject_cleared = msg.subject == nil, mine = msg.mine })
end)

-- What rawget sees before any read: data (decoded as the table is built, since nearly every
-- handler reads it), and none of the other fields until they are read.
choreo.on("RawFirst", function(msg, ctx)
  local data, type_before = rawget(msg, "data"), rawget(msg, "type")
  local _ = msg.type
  ctx:publish("RawSeen", { data = data, type_before = type_before == nil,
    type_after = rawget(msg, "type") })
end)

-- A message kept past its handler, its batch and the frame it came in.
local kept
choreo.on("Keep", function(msg) kept = msg end)
choreo.on("ReadKept", function(_, ctx)
  ctx:publish("Kept", { id = kept.id, type = kept.type, seq = kept.seq, source = kept.source,
    subject = kept.subject, data = kept.data, time = kept.time })
end)

-- The whole message as data: published, and packed and unpacked.
choreo.on("Forward", function(msg, ctx)
  local _ = msg.data.n -- a field read before
  ctx:publish("Forwarded", msg)
  ctx:publish("Packed", choreo.unpack(choreo.pack(msg)))
end)

choreo.on("Remeta", function(msg, ctx)
  local ok, err = pcall(setmetatable, msg, {})
  ctx:publish("RemetaTried", { ok = ok, err = tostring(err), type = msg.type })
end)

-- A handler that reads most fields: after its first message, the next ones of the type are
-- built whole (bindings/scripts.c); it must not be able to tell.
choreo.on("ReadMany", function(msg, ctx)
  local keys = {}
  for k in pairs(msg) do keys[#keys + 1] = k end
  table.sort(keys)
  local protected = not pcall(setmetatable, msg, {})
  ctx:publish("ReadMost", { type = msg.type, id = msg.id, source = msg.source, kind = msg.kind,
    seq = msg.seq, subject = msg.subject, keys = keys, protected = protected,
    metatable = type(getmetatable(msg)), data = msg.data })
end)

-- A handler that reads a few fields: after its first message, those it read are put in the
-- table from the start (bindings/scripts.c), each message's own; one read now and then is
-- still there, and a field cleared stays cleared (past the message built lazily again to see
-- what its handlers read now: one in 256).
choreo.on("ReadSome", function(msg, ctx)
  local i = msg.data.i
  if i == 40 then msg.seq = nil end
  ctx:publish("SomeRead", { i = i, id = msg.id, seq = msg.seq,
    subject = i % 2 == 0 and msg.subject or nil })
end)

-- Reads the names a message carries, which repeat from message to message but not always.
choreo.on("ReadNames", function(msg, ctx)
  ctx:publish("NamesRead", { i = msg.data.i, source = msg.source, type = msg.type, kind = msg.kind })
end)

-- Misuse gets errors, not crashes: the metamethods and the iterator called on other values, and
-- the hidden key overwritten (the fields not read yet are then gone).
choreo.on("Misuse", function(msg, ctx)
  local mt = debug.getmetatable(msg)
  local results = {
    index = pcall(mt.__index, 5, "type"),
    newindex = pcall(mt.__newindex, 5, "type", 1),
    pairs = pcall(mt.__pairs, 5),
  }
  local id = msg.id
  msg["\1choreo.msg"] = io.stdout
  results.type_after = tostring(msg.type) -- never read before: gone with the copy
  results.id_after = msg.id == id
  results.iterate = pcall(pairs(msg), 5)
  local ok, err = pcall(choreo.pack, msg) -- the userdata under the key cannot be sent
  results.packs, results.pack_error = ok, tostring(err):match("cannot send a value of type userdata")
  ctx:publish("Misused", results)
end)

-- Finalizers that pack while a msg is being packed (a GC step can run them whenever Lua
-- allocates): the msg still goes out whole.
choreo.on("PackUnderGc", function(msg, ctx)
  collectgarbage("incremental", 1, 1000, 0)
  local function arm()
    setmetatable({}, { __gc = function() choreo.pack({ string.rep("z", 10) }); arm() end })
  end
  for _ = 1, 200 do arm() end
  for _ = 1, 1000 do local _ = {} end
  local ok, err = pcall(ctx.publish, ctx, "PackedUnderGc", { before = string.rep("a", 40), m = msg, after = "b" })
  collectgarbage("generational")
  if not ok then error(err) end
end)
