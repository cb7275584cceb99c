-- Workflows for the specs: an order's fulfilment with a call, a compensation, a wait for an
-- event with a deadline, a sleep and a publish; and small ones for the edge cases.
local choreo = require "choreo"

choreo.workflow("Fulfilment", function(wf, input)
  local r = wf:call("warehouse", "ReserveStock", { order = input.order }, { timeout = 30 })
  if not r then wf:fail("the warehouse did not answer") end
  if not r.ok then return { status = "out of stock" } end
  wf:compensate(function() wf:send("warehouse", "ReleaseStock", { order = input.order }) end)
  local paid = wf:wait("PaymentCaptured", { timeout = 3600 })
  if not paid then wf:fail("payment timed out") end
  wf:sleep(2)
  wf:publish("OrderShipped", { order = input.order, amount = paid.amount })
  return { status = "shipped" }
end)

choreo.on("PlaceOrder", function(msg, ctx)
  ctx:start("Fulfilment", msg.data.order, msg.data)
end)

-- Draws from the recorded sources of nondeterminism, then waits, so a replay must give back
-- the same values.
choreo.workflow("Draws", function(wf)
  local drawn = { now = wf:now(), random = wf:random(), die = wf:random(6), uuid = wf:uuid(),
                  effect = wf:side_effect(function() return math.random(1000000) end) }
  wf:wait("Go")
  return drawn
end)

choreo.workflow("Faulty", function(wf, input)
  wf:compensate(function() wf:publish("Undone", { n = 1 }) end)
  wf:compensate(function() wf:publish("Undone", { n = 2 }) end)
  if input.mode == "raise" then error("boom") end
  if input.mode == "yield" then coroutine.yield("hand-made") end
  if input.mode == "loop" then while true do end end
  return "fine"
end)

choreo.workflow("Counter", function(wf, input)
  wf:wait("Tick")
  if input.n < 3 then wf:continue_as_new({ n = input.n + 1 }) end
  return input.n
end)

-- wf used where it may not be: a handler holding on to it.
local leaked
choreo.workflow("Leaky", function(wf)
  leaked = wf
  wf:wait("Never")
end)
choreo.on("UseLeaked", function() leaked:now() end)

-- Takes n steps (clock readings), then waits for Go.
choreo.workflow("Long", function(wf, input)
  for _ = 1, input.n do wf:now() end
  wf:wait("Go")
  return input.n
end)

-- A human in the loop: waits for an approval signal, or gives up after a day.
choreo.workflow("Approval", function(wf, input)
  local decision, notes = nil, {}
  wf:signal_handler("decide", function(data) decision = data.approved end)
  wf:signal_handler("note", function(data) notes[#notes + 1] = data.text end)
  wf:compensate(function() wf:publish("ApprovalWithdrawn", { doc = input.doc }) end)
  wf:send("reviewers", "PleaseReview", { doc = input.doc })
  if not wf:await(function() return decision ~= nil end, { timeout = 86400 }) then
    return { doc = input.doc, outcome = "expired", notes = notes }
  end
  wf:sleep(1)
  return { doc = input.doc, outcome = decision and "approved" or "rejected", notes = notes }
end)

-- Two waits around a send, to see that a failed save sends nothing twice and loses nothing.
choreo.workflow("TwoWaits", function(wf)
  wf:wait("Go")
  wf:send("elsewhere", "Y", {})
  wf:wait("Go2")
  wf:publish("Done", {})
end)

-- A call with a deadline in every run, continued as new once.
choreo.workflow("Looper", function(wf, input)
  local r = wf:call("svc", "Ping", {}, { timeout = 10 })
  if r and input.n < 2 then wf:continue_as_new({ n = input.n + 1 }) end
  return r and "answered" or "timed out"
end)
