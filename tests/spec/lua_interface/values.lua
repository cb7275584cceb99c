-- Handlers for values_spec.lua: what can and cannot cross the wire.
local choreo = require "choreo"

local function types_of(v)
  if type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[k] = types_of(x) end
    return t
  end
  return math.type(v) or type(v)
end

-- Publishes the data back unchanged, and the types the handler saw.
choreo.on("Roundtrip", function(msg, ctx)
  ctx:publish("Back", msg.data)
  ctx:publish("Types", { types = types_of(msg.data) })
end)

choreo.on("PublishNothing", function(_, ctx)
  ctx:publish("NothingEither", nil, { subject = "s" })
end)

-- The data argument left out altogether: the same as nil.
choreo.on("EmitNoData", function(msg, ctx)
  if msg.data.how == "publish" then
    ctx:publish("Nothing")
  elseif msg.data.how == "send" then
    ctx:send("other", "Nothing")
  elseif msg.data.how == "reply" then
    ctx:reply("Nothing")
  end
end)

local function nested(depth)
  local t = { leaf = true }
  for _ = 2, depth do t = { t } end
  return t
end

local bad = {
  ["function"] = function() return { f = print } end,
  coroutine = function() return { co = coroutine.create(print) } end,
  cycle = function() local t = { a = 1 } t.self = t return t end,
  ["deep 40"] = function() return nested(40) end,
  ["deep 31"] = function() return nested(31) end,
  ["boolean key"] = function() return { [true] = 1 } end,
  ["table key"] = function() return { [{}] = 1 } end,
  userdata = function() return { db = choreo.db } end,
  ["function at top"] = function() return print end,
}

choreo.on("PublishBad", function(msg, ctx)
  ctx:publish("GoodFirst", { ok = true })
  ctx:publish("Bad", bad[msg.data.what]())
end)

choreo.on("PublishBadCaught", function(msg, ctx)
  local ok, err = pcall(ctx.publish, ctx, "Bad", bad[msg.data.what]())
  ctx:publish("BadResult", { ok = ok, err = err })
end)

choreo.on("SendBad", function(_, ctx)
  ctx:send("other", "Bad", { f = print })
end)

choreo.on("PublishDeep", function(msg, ctx)
  ctx:publish("Deep", nested(msg.data.depth))
end)

-- What raw msgpack bytes hold, read by choreo.unpack (unpack_spec).
choreo.on("Unpack", function(msg, ctx)
  ctx:publish("Unpacked", { value = choreo.unpack(msg.data.bytes) })
end)

-- A map of msg.data.n entries, each a map itself, packed and read back: what the first byte
-- (the header) and the length say, and whether it came back the same.
choreo.on("PackMap", function(msg, ctx)
  local value = {}
  for i = 1, msg.data.n do value["k" .. i] = { v = i } end
  local packed = choreo.pack(value)
  local back = choreo.unpack(packed)
  local same = true
  for k, v in pairs(value) do
    if back[k] == nil or back[k].v ~= v.v then same = false end
  end
  for k in pairs(back) do
    if value[k] == nil then same = false end
  end
  ctx:publish("PackedMap", { first = packed:byte(1), len = #packed, same = same,
                             small = choreo.pack({ a = { b = 1 } }) })
end)
