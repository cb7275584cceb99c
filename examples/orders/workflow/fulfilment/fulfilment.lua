-- The order flow a third way: one durable workflow, written top to bottom as the process reads.
-- It directs the same warehouse and payments services as the saga in ../../orchestrated.
--   order -> reserve stock -> capture payment -> ship
--   payment failed, or no answer within PAYMENT_DEADLINE seconds -> release stock -> cancel
local choreo = require "choreo"

local PAYMENT_DEADLINE = 5

choreo.workflow("Fulfilment", function(wf, order)
  local id = order.order
  local _, stock = wf:call("warehouse", "ReserveStock", { order = id, items = order.items or 1 },
                           { timeout = 30 })
  if not stock then wf:fail("the warehouse did not answer") end
  if stock.type == "StockUnavailable" then
    wf:publish("OrderCancelled", { order = id, reason = "out of stock" })
    return { status = "cancelled: out of stock" }
  end
  -- Compensations run latest first when the workflow fails: release, then announce.
  wf:compensate(function() wf:publish("OrderCancelled", { order = id, reason = "not paid" }) end)
  wf:compensate(function() wf:send("warehouse", "ReleaseStock", { order = id }) end)

  local _, payment = wf:call("payments", "CapturePayment", { order = id, amount = order.total },
                             { timeout = PAYMENT_DEADLINE })
  if not payment then wf:fail("payment timed out") end
  if payment.type == "PaymentFailed" then wf:fail("payment failed: " .. payment.data.reason) end

  wf:call("warehouse", "Ship", { order = id })
  wf:publish("OrderCompleted", { order = id, total = order.total })
  return { status = "shipped" }
end)

choreo.on("PlaceOrder", function(msg, ctx)
  ctx:start("Fulfilment", msg.data.order, msg.data)
end)
