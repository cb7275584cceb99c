-- A bank service for the aggregate specs: accounts as event-sourced aggregates, a handler that
-- reads and appends streams itself, and an aggregate whose code is wrong in every way a
-- decider can be.
local choreo = require "choreo"

-- Deposited's first shape counted cents; the current one counts whole units.
choreo.upcast("Deposited", 1, function(data) return { amount = data.cents // 100 } end)
choreo.upcast("Legacy", 1, function() error("this shape cannot be read") end)

choreo.aggregate("Account", {
  initial = function() return { balance = 0, events = 0 } end,
  decide = {
    Open = function(state)
      if state.events > 0 then return nil, "already open" end
      return { { type = "Opened" } }
    end,
    Deposit = function(_, cmd)
      return { { type = "Deposited", data = { amount = cmd.data.amount } } }
    end,
    Withdraw = function(state, cmd)
      if state.balance < cmd.data.amount then return nil, "insufficient funds" end
      return { { type = "Withdrawn", data = { amount = cmd.data.amount } } }
    end,
    Noop = function() return {} end,
  },
  evolve = {
    Opened = function(state) state.events = state.events + 1 end,
    Deposited = function(state, e)
      state.balance = state.balance + e.data.amount
      state.events = state.events + 1
    end,
    Withdrawn = function(state, e)
      state.balance = state.balance - e.data.amount
      state.events = state.events + 1
    end,
  },
  id = "account",
  snapshot_every = 5,
})

choreo.aggregate("Faulty", {
  decide = {
    NotAList = function() return "nope" end,
    NoReason = function() return nil end,
    UnknownEvent = function() return { { type = "Mystery" } } end,
    Explode = function() return { { type = "Exploded" } } end,
    Charge = function() return { { type = "Charged" } } end,
    ReadLegacy = function() return {} end,
  },
  evolve = {
    Exploded = function() error("kaboom") end,
    Charged = function(state) state.charges = (state.charges or 0) + 1 end,
    Legacy = function() end,
  },
})

choreo.db:exec("create table if not exists deposits(stream text, version integer, amount integer)")
choreo.db:exec("create table if not exists audits(account text, balance integer, version integer)")
choreo.db:exec("create table if not exists imports(version integer, conflict integer)")

-- Stream events reach plain handlers like any event, in their current shape.
choreo.on("Deposited", function(msg, ctx)
  ctx.db:exec("insert into deposits values (?, ?, ?)", msg.subject, msg.streamversion, msg.data.amount)
end)

choreo.on("Audit", function(msg, ctx)
  local state, version = ctx:load("Account", msg.data.account)
  ctx.db:exec("insert into audits values (?, ?, ?)", msg.data.account, state.balance, version)
end)

choreo.on("Import", function(msg, ctx)
  local version, err = ctx:append("Account/" .. msg.data.account,
    { { type = "Deposited", data = { amount = msg.data.amount } } }, { expect = msg.data.expect })
  ctx.db:exec("insert into imports values (?, ?)", version or -1, err == "conflict" and 1 or 0)
end)

choreo.on("LoadNothing", function(_, ctx) ctx:load("Nope", 1) end)

-- Folds an event it appended, then fails: the whole message rolls back.
choreo.on("AppendThenFail", function(msg, ctx)
  ctx:load("Account", msg.data.account)
  ctx:append("Account/" .. msg.data.account, { { type = "Deposited", data = { amount = 1000 } } })
  ctx:load("Account", msg.data.account)
  error("after the append")
end)

-- Changes the state it loaded, which must stay its own.
choreo.on("Meddle", function(msg, ctx)
  local state = ctx:load("Account", msg.data.account)
  state.balance = 0
end)

-- A second handler of Charge, which fails after the aggregate appended and folded its event.
choreo.on("Charge", function(msg)
  if msg.data and msg.data.fail then error("after the aggregate") end
end)

-- Appends two events, the second larger than the host's largest message: the first stays in
-- the handler's transaction, which goes on, since the handler catches the error.
choreo.on("ImportPartly", function(msg, ctx)
  pcall(ctx.append, ctx, "Account/" .. msg.data.account, {
    { type = "Deposited", data = { amount = msg.data.amount } },
    { type = "Deposited", data = { amount = 0, pad = string.rep("x", 5000) } } })
end)
