-- The service the dispatch harness (tests/fuzz/fuzz_dispatch.c) runs: whatever data a fuzzed
-- frame carries goes every way a message's data can go from a handler: into SQL, back to the
-- wire format and from it, into emitted messages, saga state and durable timeouts, an
-- aggregate's stream and snapshots, a projection's table (rebuilt when the control harness asks),
-- a query's answer, and into an error that fails the message until it is dead-lettered.
local choreo = require "choreo"

choreo.db:exec("create table if not exists seen(type text, kind text, source text, data blob)")

choreo.on("*", function(msg, ctx)
  ctx.db:exec("insert into seen values (?, ?, ?, ?)", msg.type, msg.kind, msg.source,
              choreo.pack(msg.data))
end)

choreo.on("Echo", function(msg, ctx)
  ctx:publish("Echoed", msg.data, { subject = msg.subject, correlationid = msg.correlationid })
end)

choreo.on("Ask", function(msg, ctx) ctx:reply("Answer", msg.data) end)

choreo.on("Forward", function(msg, ctx) ctx:send("elsewhere", "Forwarded", msg.data) end)

choreo.on("Later", function(msg, ctx) ctx:timeout(1, "Due", msg.data) end)

choreo.on("Fail", function(msg) error(msg.data) end)

-- A string of data is read as the wire format: hostile bytes for choreo.unpack.
choreo.on("Unpack", function(msg)
  if type(msg.data) == "string" then choreo.unpack(msg.data) end
end)

choreo.saga("Order", {
  starts = { "Open" },
  correlate = { Open = "order", Close = "order" },
  on = {
    Open = function(state, msg, ctx)
      state.data = msg.data
      ctx:timeout(2, "Remind", { at = msg.time })
    end,
    Remind = function(state, msg, ctx) ctx:publish("Reminded", { at = msg.data.at, data = state.data }) end,
    Close = function(state, _, ctx)
      ctx:publish("Closed", state.data)
      ctx:complete()
    end,
  },
})

-- A command's data becomes an event of the box it names, is folded back (a snapshot every two
-- events) and comes back out through a query.
choreo.aggregate("Box", {
  decide = { Put = function(_, cmd) return { { type = "Stored", data = cmd.data } } end },
  evolve = { Stored = function(state, e) state.last, state.n = e.data, (state.n or 0) + 1 end },
  snapshot_every = 2,
  id = "box",
})

choreo.projection("boxes", {
  version = 1,
  tables = "create table boxes(box text primary key, n integer not null, last blob)",
  on = {
    Stored = function(msg, db)
      db:exec([[insert into boxes values (?, 1, ?) on conflict(box)
                do update set n = n + 1, last = excluded.last]], msg.subject, choreo.pack(msg.data))
    end,
  },
})

choreo.query("echo", function(args, db)
  return { args = args, seen = db:one("select count(*) as n from seen").n }
end)
