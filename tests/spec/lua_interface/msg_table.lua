-- Handlers for msg_table_spec.lua: the msg table is filled as its fields are first read.
local choreo = require "choreo"

-- The keys pairs() gives, without reading any field first.
choreo.on("ListFields", function(msg, ctx)
  local keys = {}
  for k in pairs(msg) do keys[#keys + 1] = k end
  table.sort(keys)
  ctx:publish("Fields", { keys = keys, metatable = tostring(getmetatable(msg)) })
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

-- A message kept past its handler, its batch and the frame it came in.
local kept
choreo.on("Keep", function(msg) kept = msg end)
choreo.on("ReadKept", function(_, ctx)
  ctx:publish("Kept", { id = kept.id, type = kept.type, seq = kept.seq, source = kept.source,
    subject = kept.subject, data = kept.data })
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
    metatable = tostring(getmetatable(msg)), data = msg.data })
end)
