local testing = require "choreo.testing"

local function types(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = m.type end
  return out
end

local function ops(history)
  local out = {}
  for i, s in ipairs(history) do out[i] = s.what end
  return out
end

-- Places order n and answers its stock reservation with ok.
local function reserved(host, n, ok)
  assert.is_true(host:deliver("PlaceOrder", { order = n }))
  local cmd = host.sent[#host.sent]
  assert.equal("ReserveStock", cmd.type)
  assert.is_true(host:reply(cmd, "StockReservation", { ok = ok }))
  return cmd
end

describe("workflows", function()
  it("runs an order through a call, a wait, a sleep and a publish", function()
    local host = testing.host()
    local cmd = reserved(host, 7, true)
    assert.equal("warehouse", cmd.to)
    assert.equal("workflow:workflows:Fulfilment:7", cmd.correlationid)
    local w = host:workflow("Fulfilment", 7)
    assert.equal("running", w.status)
    assert.equal("step 2: wait PaymentCaptured", w.waiting)
    assert.is_true(host:deliver("PaymentCaptured", { amount = 30 },
      { source = "payments", correlationid = "workflow:workflows:Fulfilment:7" }))
    assert.equal("step 3: sleep", host:workflow("Fulfilment", 7).waiting)
    assert.same({}, types(host.published))
    host:advance(2)
    w = host:workflow("Fulfilment", 7)
    assert.equal("completed", w.status)
    assert.same({ status = "shipped" }, w.result)
    assert.same({ order = 7, amount = 30 }, host.published[1].data)
    assert.equal("workflow:workflows:Fulfilment:7", host.published[1].correlationid)
    assert.same({ "call warehouse ReserveStock", "wait PaymentCaptured", "sleep", "publish OrderShipped" },
      ops(w.history))
    assert.equal(0, host:timeouts())
  end)

  it("returns early on a refusal, without compensation", function()
    local host = testing.host()
    reserved(host, 8, false)
    local w = host:workflow("Fulfilment", 8)
    assert.equal("completed", w.status)
    assert.same({ status = "out of stock" }, w.result)
    assert.same({ "ReserveStock" }, types(host.sent))
  end)

  it("fails on a timeout and runs its compensations", function()
    local host = testing.host()
    reserved(host, 9, true)
    host:advance(3599)
    assert.equal("running", host:workflow("Fulfilment", 9).status)
    host:advance(1)
    local w = host:workflow("Fulfilment", 9)
    assert.equal("failed", w.status)
    assert.matches("payment timed out", w.error)
    assert.same({ "ReserveStock", "ReleaseStock" }, types(host.sent))
    assert.equal("workflow:workflows:Fulfilment:9", host.sent[2].correlationid)
  end)

  it("times a call out", function()
    local host = testing.host()
    host:deliver("PlaceOrder", { order = 10 })
    host:advance(30)
    local w = host:workflow("Fulfilment", 10)
    assert.equal("failed", w.status)
    assert.matches("the warehouse did not answer", w.error)
    -- a late reply finds nothing waiting for it
    assert.is_true(host:reply(host.sent[1], "StockReservation", { ok = true }))
    assert.equal("failed", host:workflow("Fulfilment", 10).status)
  end)

  it("ignores a reply to another command, and a start of an id that exists", function()
    local host = testing.host()
    host:deliver("PlaceOrder", { order = 11 })
    local cmd = host.sent[1]
    assert.is_true(host:deliver("StockReservation", { ok = true }, { kind = "reply", source = "warehouse",
      correlationid = cmd.correlationid, causationid = "warehouse/999" }))
    assert.equal("step 1: call warehouse ReserveStock", host:workflow("Fulfilment", 11).waiting)
    host:deliver("PlaceOrder", { order = 11 })
    assert.equal(1, #host.sent)
  end)

  it("keeps an event that comes before its wait", function()
    local host = testing.host()
    host:deliver("PlaceOrder", { order = 12 })
    local cmd = host.sent[1]
    assert.is_true(host:deliver("PaymentCaptured", { amount = 5 },
      { source = "payments", correlationid = "workflow:workflows:Fulfilment:12" }))
    host:reply(cmd, "StockReservation", { ok = true })
    assert.equal("step 3: sleep", host:workflow("Fulfilment", 12).waiting)
    host:advance(2)
    assert.same({ order = 12, amount = 5 }, host.published[1].data)
  end)

  it("starts through host:start and gives back recorded values when replayed", function()
    local host = testing.host()
    assert.is_true(host:start("Draws", "d1"))
    local before = host:workflow("Draws", "d1")
    assert.equal("running", before.status)
    assert.equal(6, before.steps) -- five draws (random(6) is one more), then the wait
    -- a reload drops the coroutines kept in memory: the next message replays the history
    assert.is_true(host:reload())
    host:advance(100)
    assert.is_true(host:deliver("Go", nil, { correlationid = "workflow:workflows:Draws:d1" }))
    local w = host:workflow("Draws", "d1")
    assert.equal("completed", w.status)
    for i = 1, 5 do assert.same(before.history[i].result, w.history[i].result) end
    local r = w.result
    assert.equal(before.history[1].result.v, r.now)
    assert.is_true(r.die >= 1 and r.die <= 6)
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", r.uuid)
  end)

  it("fails on an error, running compensations once, latest first", function()
    local host = testing.host()
    host:start("Faulty", 1, { mode = "raise" })
    local w = host:workflow("Faulty", 1)
    assert.equal("failed", w.status)
    assert.matches("boom", w.error)
    assert.same({ 2, 1 }, { host.published[1].data.n, host.published[2].data.n })
  end)

  it("fails a workflow that yields by itself", function()
    local host = testing.host()
    host:start("Faulty", 2, { mode = "yield" })
    local w = host:workflow("Faulty", 2)
    assert.equal("failed", w.status)
    assert.matches("yielded by itself", w.error)
  end)

  it("fails the message, not the workflow, when the budget runs out", function()
    local host = testing.host(nil, { instructions = 200000 })
    local ok, err = host:start("Faulty", 3, { mode = "loop" })
    assert.is_false(ok)
    assert.matches("instruction limit", err)
    assert.is_nil(host:workflow("Faulty", 3))
  end)

  it("continues as new with a fresh history", function()
    local host = testing.host()
    host:start("Counter", "c", { n = 1 })
    for _ = 1, 2 do
      assert.is_true(host:deliver("Tick", nil, { correlationid = "workflow:workflows:Counter:c" }))
      local w = host:workflow("Counter", "c")
      assert.equal("running", w.status)
      assert.equal(1, #w.history) -- a fresh history, its steps numbered on
      assert.equal(w.steps, w.history[1].step)
    end
    host:deliver("Tick", nil, { correlationid = "workflow:workflows:Counter:c" })
    local w = host:workflow("Counter", "c")
    assert.equal("completed", w.status)
    assert.equal(3, w.result)
    assert.same({ n = 3 }, w.input)
  end)

  it("fails an instance whose history would pass --workflow-history-max", function()
    local host = testing.host(nil, { workflow_history_max = 10 })
    host:start("Long", "short", { n = 9 })
    assert.equal("running", host:workflow("Long", "short").status)
    host:start("Long", "long", { n = 10 })
    local w = host:workflow("Long", "long")
    assert.equal("failed", w.status)
    assert.matches("the history reached 10 steps, the limit: .* wf:continue_as_new", w.error)
  end)

  it("replays the instances a small --workflow-cache evicts, correctly", function()
    local host = testing.host(nil, { workflow_cache = 1 })
    for i = 1, 3 do host:deliver("PlaceOrder", { order = i }) end
    for i = 1, 3 do host:reply(host.sent[i], "StockReservation", { ok = true }) end
    for i = 3, 1, -1 do
      host:deliver("PaymentCaptured", { amount = i }, { correlationid = "workflow:workflows:Fulfilment:" .. i })
    end
    host:advance(2)
    for i = 1, 3 do
      assert.equal("completed", host:workflow("Fulfilment", i).status)
    end
    local amounts = {}
    for _, m in ipairs(host.published) do amounts[m.data.order] = m.data.amount end
    assert.same({ 1, 2, 3 }, amounts)
    assert.equal(3, #host.sent)
  end)

  it("keeps nothing in memory ahead of the database when a save fails", function()
    local host = testing.host()
    host:start("TwoWaits", 1)
    host.db:exec("create table failnext(x)")
    host.db:exec([[create trigger fail_save before update on choreo_workflows
                   when exists (select 1 from failnext) begin select raise(abort, 'injected'); end]])
    host.db:exec("insert into failnext values (1)")
    local ok, err = host:deliver("Go", nil, { correlationid = "workflow:workflows:TwoWaits:1" })
    assert.is_false(ok)
    assert.matches("workflow save failed", err)
    host.db:exec("delete from failnext")
    host:advance(1) -- the delayed retry
    assert.equal("step 3: wait Go2", host:workflow("TwoWaits", 1).waiting)
    assert.equal(1, #host.sent)
    host:deliver("Go2", nil, { correlationid = "workflow:workflows:TwoWaits:1" })
    local w = host:workflow("TwoWaits", 1)
    assert.equal("completed", w.status)
    assert.equal(1, #host.sent)
    assert.equal("Done", host.published[1].type)
  end)

  it("never takes a timer of the run before a continue_as_new for one of the new run's", function()
    local host = testing.host()
    host:start("Looper", "l", { n = 1 })
    host:reply(host.sent[1], "Pong")
    assert.equal("step 2: call svc Ping", host:workflow("Looper", "l").waiting)
    -- the first run's timer, come due just before its reply was handled
    assert.is_true(host:deliver("choreo.WorkflowTimer", { step = 1 },
      { kind = "timeout", subject = "workflow:workflows:Looper:l" }))
    assert.equal("running", host:workflow("Looper", "l").status)
    host:reply(host.sent[2], "Pong")
    assert.equal("answered", host:workflow("Looper", "l").result)
  end)

  it("refuses wf outside its workflow and unknown workflows", function()
    local host = testing.host()
    host:start("Leaky", 1)
    local ok, err = host:deliver("UseLeaked")
    assert.is_false(ok)
    assert.matches("only valid inside its workflow", err)
    ok, err = host:start("Nope", 1)
    assert.is_false(ok)
    assert.matches("no workflow named 'Nope'", err)
  end)

  it("marks an instance stuck when the code no longer takes its recorded steps", function()
    local host = testing.host()
    host:deliver("PlaceOrder", { order = 13 })
    host.db:exec("update choreo_workflow_history set what = 'call warehouse Other' where id = '13'")
    local ok, err = host:reload() -- checked against the history: refused
    assert.is_nil(ok)
    assert.matches("workflow Fulfilment 13 would be stuck: step 1", err)
    -- as after a rollback: the kept coroutine is stale, so the reply replays the history
    host.db:exec("update choreo_workflows set rev = rev + 100 where id = '13'")
    host:reply(host.sent[1], "StockReservation", { ok = true })
    local w = host:workflow("Fulfilment", 13)
    assert.equal("stuck", w.status)
    assert.matches("step 1: the history records 'call warehouse Other' but the code now does " ..
      "'call warehouse ReserveStock'", w.error)
    -- code that matches again (here: the history put back): the next reload resumes it
    host.db:exec("update choreo_workflow_history set what = 'call warehouse ReserveStock' where id = '13'")
    assert.is_true(host:reload())
    w = host:workflow("Fulfilment", 13)
    assert.equal("running", w.status)
    assert.equal("step 2: wait PaymentCaptured", w.waiting)
  end)
end)
