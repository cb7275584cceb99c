-- The read side: a statement line per money event, as a projection (its handlers keep its table
-- in each event's transaction; a new `version` rebuilds it from the accounts' streams), and the
-- queries that serve it (`choreo query`, or HTTP with --http).
local choreo = require "choreo"

local function line(msg, db)
  db:exec("insert into statement values (?, ?, ?, ?, ?)", msg.subject:match("^Account/(.+)$"),
    msg.streamversion, msg.type, msg.data.amount, msg.time)
end

choreo.projection("statement", {
  version = 1,
  tables = {
    [[create table statement(account text, version integer, type text, amount integer, time text,
      primary key (account, version))]],
    "create table owners(account text primary key, owner text)",
  },
  on = {
    Opened = function(msg, db)
      db:exec("insert into owners values (?, ?)", msg.subject:match("^Account/(.+)$"), msg.data.owner)
    end,
    Deposited = line,
    Withdrawn = line,
  },
})

choreo.query("statement", function(args, db)
  local lines, balance = {}, 0
  for row in db:rows("select version, type, amount, time from statement where account = ? order by version",
                     tostring(args and args.account)) do
    balance = balance + (row.type == "Deposited" and row.amount or -row.amount)
    row.balance = balance
    lines[#lines + 1] = row
  end
  local owner = db:one("select owner from owners where account = ?", tostring(args and args.account))
  return { account = args and args.account, owner = owner and owner.owner, balance = balance, lines = lines }
end)

choreo.query("balances", function(_, db)
  local out = {}
  for row in db:rows([[select account, sum(case type when 'Deposited' then amount else -amount end) as balance
                       from statement group by account order by account]]) do
    out[#out + 1] = row
  end
  return out
end)
