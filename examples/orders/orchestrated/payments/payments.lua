-- Payments for the orchestrated flow: captures on command and replies. Amounts over LIMIT are
-- declined; an amount of exactly 13 is never answered, to show the saga's payment deadline.
local choreo = require "choreo"

local LIMIT = 1000

choreo.db:exec("create table if not exists captures(order_id integer primary key, amount integer not null)")

choreo.on("CapturePayment", function(msg, ctx)
  local order, amount = msg.data.order, msg.data.amount
  if amount == 13 then
    ctx.log.warn("payment provider does not answer for order", order)
  elseif amount > LIMIT then
    ctx:reply("PaymentFailed", { order = order, reason = "over the limit" })
  else
    ctx.db:exec("insert or ignore into captures values (?, ?)", order, amount)
    ctx:reply("PaymentCaptured", { order = order, amount = amount })
  end
end)
