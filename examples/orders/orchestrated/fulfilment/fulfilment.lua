-- The orchestrated version of the order flow: one saga owns the whole process and tells the
-- other services what to do, by command, waiting for their replies.
--   order -> reserve stock -> capture payment -> ship
--   payment failed, or no answer within PAYMENT_DEADLINE seconds -> release stock -> cancel
local choreo = require "choreo"

local PAYMENT_DEADLINE = 5

choreo.db:exec([[create table if not exists orders(
  id integer primary key, total integer not null, status text not null)]])

local function set_status(ctx, order, status)
  ctx.db:exec("update orders set status = ? where id = ?", status, order)
  ctx.log.info("order", order, status)
end

local function cancel(reason)
  return function(state, msg, ctx)
    if state.status ~= "paying" then return end -- the deadline passed after the payment was settled
    ctx:send("warehouse", "ReleaseStock", { order = msg.data.order })
    set_status(ctx, msg.data.order, "cancelled: " .. reason)
    ctx:publish("OrderCancelled", { order = msg.data.order, reason = reason })
    ctx:complete()
  end
end

choreo.saga("Fulfilment", {
  starts = { "PlaceOrder" },
  correlate = {
    PlaceOrder = "order", StockReserved = "order", StockUnavailable = "order",
    PaymentCaptured = "order", PaymentFailed = "order", Shipped = "order",
  },
  on = {
    PlaceOrder = function(state, msg, ctx)
      state.total, state.status = msg.data.total, "reserving"
      ctx.db:exec("insert into orders(id, total, status) values (?, ?, 'reserving')", msg.data.order, msg.data.total)
      ctx:send("warehouse", "ReserveStock", { order = msg.data.order, items = msg.data.items or 1 })
    end,
    StockReserved = function(state, msg, ctx)
      state.status = "paying"
      set_status(ctx, msg.data.order, "paying")
      ctx:send("payments", "CapturePayment", { order = msg.data.order, amount = state.total })
      ctx:timeout(PAYMENT_DEADLINE, "PaymentOverdue", { order = msg.data.order })
    end,
    StockUnavailable = function(_, msg, ctx)
      set_status(ctx, msg.data.order, "cancelled: out of stock")
      ctx:publish("OrderCancelled", { order = msg.data.order, reason = "out of stock" })
      ctx:complete()
    end,
    PaymentCaptured = function(state, msg, ctx)
      state.status = "shipping"
      set_status(ctx, msg.data.order, "shipping")
      ctx:send("warehouse", "Ship", { order = msg.data.order })
    end,
    PaymentFailed = cancel("payment failed"),
    PaymentOverdue = cancel("payment timed out"),
    Shipped = function(state, msg, ctx)
      set_status(ctx, msg.data.order, "shipped")
      ctx:publish("OrderCompleted", { order = msg.data.order, total = state.total })
      ctx:complete()
    end,
  },
})
