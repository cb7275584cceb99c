-- A service for the query specs: a table its handler fills, queries that read it, and
-- queries that try what a query may not do.
local choreo = require "choreo"

choreo.db:exec("create table if not exists entries(account text, amount integer)")
choreo.on("Entry", function(msg, ctx)
  ctx.db:exec("insert into entries values (?, ?)", msg.data.account, msg.data.amount)
end)

choreo.query("balance", function(args, db)
  local row = db:one("select coalesce(sum(amount), 0) as balance, count(*) as entries " ..
                     "from entries where account = ?", args.account)
  return { account = args.account, balance = row.balance, entries = row.entries }
end)

choreo.query("accounts", function(_, db)
  local out = {}
  for row in db:rows("select account, sum(amount) as balance from entries group by account order by account") do
    out[#out + 1] = row
  end
  return out
end)

choreo.query("write", function(_, db) db:exec("delete from entries") end)
choreo.query("attach", function(_, db) db:exec("attach database ':memory:' as other") end)
choreo.query("pragma", function(_, db) return db:one("pragma journal_mode = delete") end)
choreo.query("schema", function(_, db) db:exec("create table sneaky(x)") end)
choreo.query("forever", function() while true do end end)
choreo.query("function", function() return print end)
choreo.query("fails", function() error("the ledger is closed") end)
