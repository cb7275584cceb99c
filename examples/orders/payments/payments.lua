-- The payments service: charges placed orders (declining any above the limit) and issues
-- receipts on command, replying to whoever asked.
local choreo = require "choreo"

local LIMIT = 1000

choreo.db:exec([[create table if not exists payments(
  order_id integer primary key, amount integer not null, receipt text)]])

choreo.on("OrderPlaced", function(msg, ctx)
  local order, total = msg.data.order, msg.data.total
  if total > LIMIT then
    ctx:publish("PaymentDeclined", { order = order, reason = "over the limit of " .. LIMIT })
    return
  end
  ctx.db:exec("insert into payments(order_id, amount) values (?, ?)", order, total)
  ctx.log.info("captured", total, "for order", order)
  ctx:publish("PaymentCaptured", { order = order, amount = total })
end)

choreo.on("IssueReceipt", function(msg, ctx)
  local receipt = string.format("R-%06d", msg.data.order)
  ctx.db:exec("update payments set receipt = ? where order_id = ?", receipt, msg.data.order)
  ctx:reply("ReceiptIssued", { order = msg.data.order, receipt = receipt })
end)
