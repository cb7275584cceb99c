-- Handlers for dispatch_spec.lua: patterns, handler order, msg fields, ctx:publish/send/reply.
-- No type published here starts with "Order", so the "Order*" handler cannot feed itself.
local choreo = require "choreo"

-- Several handlers for one exact type, registered in this order; then a prefix.
choreo.on("OrderPlaced", function(msg, ctx)
  ctx:publish("HandlerRan", { handler = "exact 1", type = msg.type })
end)
choreo.on("OrderPlaced", function(msg, ctx)
  ctx:publish("HandlerRan", { handler = "exact 2", type = msg.type })
end)
choreo.on("Order*", function(msg, ctx)
  ctx:publish("HandlerRan", { handler = "prefix", type = msg.type })
end)
choreo.on("OrderPlaced", function(msg, ctx)
  ctx:publish("HandlerRan", { handler = "exact 3", type = msg.type })
end)

-- One failing handler among several: the whole message's effects go together.
choreo.db:exec("create table if not exists multi_effects(handler text)")
choreo.on("MultiFail", function(_, ctx)
  ctx.db:exec("insert into multi_effects values ('first')")
  ctx:publish("MultiFirstRan", {})
end)
choreo.on("MultiFail", function(msg)
  if msg.data.fail then error("second handler fails") end
end)

-- Reports every field of the message it handles.
local function fields(msg)
  return {
    type = msg.type, id = msg.id, source = msg.source, seq = msg.seq,
    seq_type = math.type(msg.seq), time = msg.time, subject = msg.subject, kind = msg.kind,
    to = msg.to, correlationid = msg.correlationid, causationid = msg.causationid,
    data = msg.data,
  }
end

choreo.on("Inspect", function(msg, ctx)
  ctx:publish("Inspected", fields(msg))
end)

-- A conversation: Start -> (event) Middle -> (event) End, all handled here.
choreo.on("Start", function(msg, ctx)
  ctx:publish("Middle", { from = msg.id })
end)
choreo.on("Middle", function(msg, ctx)
  ctx:publish("End", fields(msg))
end)

-- Emission with options.
choreo.on("Emit", function(msg, ctx)
  local d = msg.data
  if d.how == "publish" then
    ctx:publish("Emitted", { n = 1 }, d.opts)
  elseif d.how == "send" then
    ctx:send(d.to, "DoThing", { n = 2 }, d.opts)
  elseif d.how == "reply" then
    ctx:reply("Answer", { n = 3 })
  elseif d.how == "all" then
    ctx:publish("Emitted", { n = 1 })
    ctx:send("shipping", "DoThing", { n = 2 })
    ctx:reply("Answer", { n = 3 })
  end
end)

-- A command handler that replies to whoever sent it.
choreo.on("Ask", function(msg, ctx)
  ctx:reply("Answer", { question = msg.data.q, asked_by = msg.source })
end)

-- Mistakes in ctx calls raise; report the message.
choreo.on("BadCall", function(msg, ctx)
  local d = msg.data
  local ok, err
  if d.case == "empty type" then
    ok, err = pcall(ctx.publish, ctx, "", {})
  elseif d.case == "opts not a table" then
    ok, err = pcall(ctx.publish, ctx, "X", {}, "subject")
  elseif d.case == "subject not a string" then
    ok, err = pcall(ctx.publish, ctx, "X", {}, { subject = 7 })
  elseif d.case == "send without destination" then
    ok, err = pcall(ctx.send, ctx, nil, "X", {})
  end
  ctx:publish("BadCallResult", { ok = ok, err = err })
end)

-- Registers a handler while handling a message: types seen before must find it from then on.
choreo.on("Subscribe", function(msg)
  choreo.on(msg.data.type, function(m, ctx)
    ctx:publish("LateHandlerRan", { type = m.type })
  end)
end)

-- Rolls back a savepoint of its own around a publish: the event goes with it, and what the
-- handler publishes afterwards still gets the next seq.
choreo.on("OwnSavepoint", function(_, ctx)
  ctx:publish("Before", {})
  ctx.db:exec("savepoint mine")
  ctx:publish("Undone", {})
  ctx.db:exec("rollback to mine")
  ctx.db:exec("release mine")
  ctx:publish("Kept", {})
end)

-- Publishes more than the store writes in one go, then reads the log with SQL of its own.
choreo.on("CountsItsOwn", function(_, ctx)
  for i = 1, 70 do ctx:publish("Many", { i = i }) end
  local row = ctx.db:one("select count(*) as n from choreo_log where type = 'Many'")
  ctx:publish("Counted", { n = row.n })
end)

-- Arguments to choreo.on past its options are ignored.
choreo.on("ExtraArgs", function(_, ctx) ctx:publish("ExtraArgsRan", {}) end, nil, { unused = true })
