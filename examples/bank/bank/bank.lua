-- The bank: accounts as event-sourced aggregates, and transfers between them as a saga that
-- pays the money back when the second leg is refused. The read side is statement.lua.
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

-- Accounts opened by the first release recorded the owner as `name`; the stream keeps those
-- events as they were written, and this brings them to the current shape whenever they are read.
choreo.upcast("Opened", 1, function(data) return { owner = data.name } end)

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
