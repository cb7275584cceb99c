-- The statement's second version, which examples/bank/run puts in place of bank/statement.lua
-- while the host runs: each line now keeps the balance after it, so the query reads it instead
-- of adding the lines up. Lines already written have no such column: `version = 2` has the host
-- build the new table from the first event of every account, while the old table and the old
-- code go on answering, and swap it in once it has caught up.
local choreo = require "choreo"

local function line(msg, db)
  local account = msg.subject:match("^Account/(.+)$")
  local last = db:one("select balance from statement where account = ? order by version desc limit 1", account)
  local amount = msg.type == "Deposited" and msg.data.amount or -msg.data.amount
  db:exec("insert into statement values (?, ?, ?, ?, ?, ?)", account, msg.streamversion, msg.type,
    msg.data.amount, (last and last.balance or 0) + amount, msg.time)
end

choreo.projection("statement", {
  version = 2,
  tables = {
    [[create table statement(account text, version integer, type text, amount integer,
      balance integer, time text, primary key (account, version))]],
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
  local lines = {}
  for row in db:rows("select version, type, amount, balance, time from statement where account = ? order by version",
                     tostring(args and args.account)) do
    lines[#lines + 1] = row
  end
  local owner = db:one("select owner from owners where account = ?", tostring(args and args.account))
  return { account = args and args.account, owner = owner and owner.owner,
           balance = #lines > 0 and lines[#lines].balance or 0, lines = lines }
end)

choreo.query("balances", function(_, db)
  local out = {}
  for row in db:rows([[select account, balance from statement s where version =
                       (select max(version) from statement where account = s.account) order by account]]) do
    out[#out + 1] = row
  end
  return out
end)
