-- The bank: accounts as event-sourced aggregates, transfers between them as a saga that pays
-- the money back when the second leg is refused, and a statement per account as the read side,
-- served as queries.
local choreo = require "choreo"

choreo.aggregate("Account", {
  initial = function() return { open = false, balance = 0 } end,
  decide = {
    Open = function(state, cmd)
      if state.open then return nil, "already open" end
      return { { type = "Opened", data = { owner = cmd.data.owner } } }
    end,
    Deposit = function(state, cmd)
      if not state.open then return nil, "no such account" end
      return { { type = "Deposited", data = { amount = cmd.data.amount } } }
    end,
    Withdraw = function(state, cmd)
      if not state.open then return nil, "no such account" end
      if state.balance < cmd.data.amount then return nil, "insufficient funds" end
      return { { type = "Withdrawn", data = { amount = cmd.data.amount } } }
    end,
  },
  evolve = {
    Opened = function(state) state.open = true end,
    Deposited = function(state, e) state.balance = state.balance + e.data.amount end,
    Withdrawn = function(state, e) state.balance = state.balance - e.data.amount end,
  },
  snapshot_every = 50,
})

-- Everything a transfer causes shares its conversation: the commands it sends, the events
-- they append and the rejections they earn all carry the request's correlation id.
local function conversation(msg) return msg.correlationid end

local function account(id) return { subject = "Account/" .. id } end

choreo.saga("Transfer", {
  starts = { "RequestTransfer" },
  correlate = { RequestTransfer = conversation, Withdrawn = conversation,
                Deposited = conversation, CommandRejected = conversation },
  on = {
    RequestTransfer = function(state, msg, ctx)
      state.from, state.to, state.amount = msg.data.from, msg.data.to, msg.data.amount
      state.step = "withdrawing"
      ctx:send(choreo.name, "Withdraw", { amount = state.amount }, account(state.from))
    end,
    Withdrawn = function(state, _, ctx)
      state.step = "depositing"
      ctx:send(choreo.name, "Deposit", { amount = state.amount }, account(state.to))
    end,
    Deposited = function(state, _, ctx)
      if state.step == "refunding" then
        ctx:publish("TransferFailed", { from = state.from, to = state.to, reason = state.reason, refunded = true })
      else
        ctx:publish("TransferCompleted", { from = state.from, to = state.to, amount = state.amount })
      end
      ctx:complete()
    end,
    CommandRejected = function(state, msg, ctx)
      if state.step == "depositing" then -- the money left `from`: it goes back
        state.step, state.reason = "refunding", msg.data.reason
        ctx:send(choreo.name, "Deposit", { amount = state.amount }, account(state.from))
        return
      end
      if state.step == "refunding" then error("the refund to " .. state.from .. " was refused: " .. msg.data.reason) end
      ctx:publish("TransferFailed", { from = state.from, to = state.to, reason = msg.data.reason, refunded = false })
      ctx:complete()
    end,
  },
})

-- The read side: a statement line per money event, kept by a plain handler in the event's
-- transaction, and the queries that serve it (`choreo query`, or HTTP with --http).
choreo.db:exec([[create table if not exists statement(account text, version integer, type text,
  amount integer, time text, primary key (account, version))]])

local function on_money(msg, ctx)
  ctx.db:exec("insert into statement values (?, ?, ?, ?, ?)", msg.subject:match("^Account/(.+)$"),
    msg.streamversion, msg.type, msg.data.amount, msg.time)
end
choreo.on("Deposited", on_money)
choreo.on("Withdrawn", on_money)

choreo.query("statement", function(args, db)
  local lines, balance = {}, 0
  for row in db:rows("select version, type, amount, time from statement where account = ? order by version",
                     tostring(args and args.account)) do
    balance = balance + (row.type == "Deposited" and row.amount or -row.amount)
    row.balance = balance
    lines[#lines + 1] = row
  end
  return { account = args and args.account, balance = balance, lines = lines }
end)

choreo.query("balances", function(_, db)
  local out = {}
  for row in db:rows([[select account, sum(case type when 'Deposited' then amount else -amount end) as balance
                       from statement group by account order by account]]) do
    out[#out + 1] = row
  end
  return out
end)
