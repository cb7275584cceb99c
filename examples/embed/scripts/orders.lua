-- The Lua half of the embed example (../main.c): the host's C handler records every OrderPlaced
-- and publishes OrderRecorded; this handler counts those in a table of its own and reports each
-- count back as OrderCounted, which a second C handler follows.
local choreo = require "choreo"

-- Runs while the scripts load (when main.c opens the host), before any message is handled.
choreo.db:exec("create table if not exists counted(order_id integer not null)")

choreo.on("OrderRecorded", function(msg, ctx)
  -- Inside the message's transaction: the row and the OrderCounted event commit together.
  ctx.db:exec("insert into counted(order_id) values (?)", msg.data.order)
  local total = ctx.db:one("select count(*) as n from counted").n
  ctx.log.info("order", msg.data.order, "counted;", total, "in all")
  ctx:publish("OrderCounted", { order = msg.data.order, total = total })
end)
