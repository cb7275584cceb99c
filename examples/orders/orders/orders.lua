-- The orders service: takes PlaceOrder commands, records orders, and follows them as
-- payments react (choreography: nobody directs the flow, each service reacts to events).
local choreo = require "choreo"

choreo.db:exec([[create table if not exists orders(
  id integer primary key, total integer not null, status text not null, receipt text)]])

choreo.on("PlaceOrder", function(msg, ctx)
  local order = msg.data
  assert(type(order.order) == "number", "PlaceOrder needs a numeric 'order'")
  local ok, err = ctx.db:exec("insert into orders(id, total, status) values (?, ?, 'placed')",
    order.order, order.total)
  if not ok then
    ctx.log.warn("order", order.order, "already placed:", err)
    return
  end
  ctx.log.info("order", order.order, "placed, total", order.total)
  ctx:publish("OrderPlaced", { order = order.order, total = order.total })
end)

choreo.on("PaymentCaptured", function(msg, ctx)
  ctx.db:exec("update orders set status = 'paid' where id = ?", msg.data.order)
  ctx.log.info("order", msg.data.order, "paid")
  ctx:send("payments", "IssueReceipt", { order = msg.data.order })
end)

choreo.on("PaymentDeclined", function(msg, ctx)
  ctx.db:exec("update orders set status = 'cancelled' where id = ?", msg.data.order)
  ctx.log.info("order", msg.data.order, "cancelled:", msg.data.reason)
  ctx:publish("OrderCancelled", { order = msg.data.order, reason = msg.data.reason })
end)

choreo.on("ReceiptIssued", function(msg, ctx)
  ctx.db:exec("update orders set receipt = ? where id = ?", msg.data.receipt, msg.data.order)
  ctx.log.info("order", msg.data.order, "has receipt", msg.data.receipt)
end)
