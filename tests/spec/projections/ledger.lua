-- A small ledger: accounts as aggregates, and a projection of their balances with a query
-- that serves it.
local choreo = require "choreo"

choreo.aggregate("Account", {
  initial = function() return { balance = 0 } end,
  decide = {
    Deposit = function(_, cmd) return { { type = "Deposited", data = { amount = cmd.data.amount } } } end,
    Withdraw = function(state, cmd)
      if state.balance < cmd.data.amount then return nil, "insufficient funds" end
      return { { type = "Withdrawn", data = { amount = cmd.data.amount } } }
    end,
  },
  evolve = {
    Deposited = function(state, e) state.balance = state.balance + e.data.amount end,
    Withdrawn = function(state, e) state.balance = state.balance - e.data.amount end,
  },
})

local function account(msg) return msg.subject:match("^Account/(.+)$") end

choreo.projection("balances", {
  version = 1,
  tables = "create table balances(account text primary key, balance integer not null)",
  on = {
    Deposited = function(msg, db)
      db:exec([[insert into balances values (?, ?) on conflict(account)
                do update set balance = balance + excluded.balance]], account(msg), msg.data.amount)
    end,
    Withdrawn = function(msg, db)
      db:exec("update balances set balance = balance - ? where account = ?", msg.data.amount, account(msg))
    end,
  },
})

choreo.query("balance", function(args, db)
  local row = db:one("select balance from balances where account = ?", args.account)
  return row and row.balance
end)
