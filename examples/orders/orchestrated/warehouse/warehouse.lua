-- The warehouse: reserves, releases and ships stock when told to, and replies to whoever asked.
local choreo = require "choreo"

local STOCK = 10 -- items on hand when the warehouse starts empty-handed

choreo.db:exec("create table if not exists reservations(order_id integer primary key, items integer not null)")

local function reserved()
  return choreo.db:one("select coalesce(sum(items), 0) as n from reservations").n
end

choreo.on("ReserveStock", function(msg, ctx)
  local items = msg.data.items
  if reserved() + items > STOCK then
    ctx:reply("StockUnavailable", { order = msg.data.order })
    return
  end
  ctx.db:exec("insert or ignore into reservations values (?, ?)", msg.data.order, items)
  ctx:reply("StockReserved", { order = msg.data.order })
end)

choreo.on("ReleaseStock", function(msg, ctx)
  ctx.db:exec("delete from reservations where order_id = ?", msg.data.order)
  ctx.log.info("released stock of order", msg.data.order)
end)

choreo.on("Ship", function(msg, ctx)
  ctx.log.info("shipping order", msg.data.order)
  ctx:reply("Shipped", { order = msg.data.order })
end)
