-- An orchestrating saga for the specs: reserve stock, then take payment, with a payment
-- deadline and compensation.
local choreo = require "choreo"

choreo.saga("Fulfilment", {
  starts = { "OrderPlaced" },
  correlate = {
    OrderPlaced = "order",
    StockReserved = "order",
    PaymentCaptured = function(msg) return msg.data.order_id end,
    PaymentFailed = "order",
  },
  on = {
    OrderPlaced = function(state, msg, ctx)
      state.total = msg.data.total
      state.step = "reserving"
      ctx:send("stock", "ReserveStock", { order = msg.data.order })
    end,
    StockReserved = function(state, msg, ctx)
      state.step = "paying"
      ctx:send("payments", "CapturePayment", { order = msg.data.order, amount = state.total })
      ctx:timeout(30, "PaymentOverdue", { order = msg.data.order })
    end,
    PaymentCaptured = function(state, msg, ctx)
      state.step = "shipping"
      ctx:send("shipping", "Ship", { order = msg.data.order_id })
      ctx:publish("OrderCompleted", { order = msg.data.order_id, total = state.total })
      ctx:complete()
    end,
    PaymentFailed = function(_, msg, ctx)
      ctx:send("stock", "ReleaseStock", { order = msg.data.order })
      ctx:publish("OrderCancelled", { order = msg.data.order, reason = "payment failed" })
      ctx:complete()
    end,
    PaymentOverdue = function(_, msg, ctx)
      ctx:send("stock", "ReleaseStock", { order = msg.data.order })
      ctx:publish("OrderCancelled", { order = msg.data.order, reason = "payment overdue" })
      ctx:complete()
    end,
  },
})

-- A saga whose correlate function can return a bad key.
choreo.saga("Picky", {
  starts = { "PickyStart" },
  correlate = { PickyStart = function(msg) return msg.data.key end },
  on = { PickyStart = function(state) state.started = true end },
})
