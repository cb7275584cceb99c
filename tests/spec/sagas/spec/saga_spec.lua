local testing = require "choreo.testing"

local function types(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = m.type end
  return out
end

describe("sagas", function()
  it("starts an instance, keeps its state and correlates later messages", function()
    local host = testing.host()
    assert.is_true(host:deliver("OrderPlaced", { order = 7, total = 30 }, { source = "orders" }))
    assert.same({ total = 30, step = "reserving" }, host:saga("Fulfilment", 7))
    assert.equal("ReserveStock", host.sent[1].type)
    assert.is_true(host:deliver("StockReserved", { order = 7 }, { source = "stock" }))
    assert.equal("paying", host:saga("Fulfilment", 7).step)
    assert.same({ order = 7, amount = 30 }, host.sent[2].data)
    assert.equal(1, host:timeouts())
  end)

  it("correlates with a function and completes: state deleted, timeouts cancelled", function()
    local host = testing.host()
    host:deliver("OrderPlaced", { order = 8, total = 5 }, { source = "orders" })
    host:deliver("StockReserved", { order = 8 }, { source = "stock" })
    assert.is_true(host:deliver("PaymentCaptured", { order_id = 8 }, { source = "payments" }))
    assert.is_nil(host:saga("Fulfilment", 8))
    assert.equal(0, host:timeouts())
    assert.same({ "OrderCompleted" }, types(host.published))
    host:advance(60)
    assert.same({ "OrderCompleted" }, types(host.published))
  end)

  it("fires a durable timeout back into its instance when the clock passes it", function()
    local host = testing.host()
    host:deliver("OrderPlaced", { order = 9, total = 5 }, { source = "orders" })
    host:deliver("StockReserved", { order = 9 }, { source = "stock" })
    host:advance(29)
    assert.equal("paying", host:saga("Fulfilment", 9).step)
    assert.is_true(host:advance(1))
    assert.is_nil(host:saga("Fulfilment", 9))
    assert.same({ order = 9, reason = "payment overdue" }, host.published[1].data)
    assert.equal("ReleaseStock", host.sent[3].type)
  end)

  it("keeps instances apart", function()
    local host = testing.host()
    host:deliver("OrderPlaced", { order = 1, total = 10 }, { source = "orders" })
    host:deliver("OrderPlaced", { order = 2, total = 20 }, { source = "orders" })
    host:deliver("PaymentFailed", { order = 1 }, { source = "payments" })
    assert.is_nil(host:saga("Fulfilment", 1))
    assert.equal(20, host:saga("Fulfilment", 2).total)
  end)

  it("ignores (and counts) a message for an instance that does not exist", function()
    local host = testing.host()
    assert.is_true(host:deliver("StockReserved", { order = 404 }, { source = "stock" }))
    assert.equal(0, #host.sent)
    assert.equal(1, host.db:one("select count from choreo_saga_misses where name = 'Fulfilment'").count)
  end)

  it("fails a message whose correlation key is nil or not a scalar", function()
    local host = testing.host()
    local ok, err = host:deliver("PickyStart", { key = { 1 } })
    assert.is_false(ok)
    assert.matches("correlation key for 'PickyStart' is a table", err, 1, true)
    ok, err = host:deliver("PickyStart", {})
    assert.is_false(ok)
    assert.matches("is nil", err, 1, true)
    assert.is_true(host:deliver("PickyStart", { key = "k" }))
    assert.same({ started = true }, host:saga("Picky", "k"))
  end)

  it("rolls back state and timeouts when a saga handler fails", function()
    local host = testing.host()
    host:deliver("OrderPlaced", { order = 5, total = 1 }, { source = "orders" })
    local ok = host:deliver("StockReserved", { order = "not-a-number", oops = true }, { source = "stock" })
    assert.is_true(ok) -- no instance for that key: ignored, not failed
    assert.equal("reserving", host:saga("Fulfilment", 5).step)
  end)
end)

describe("saga definitions and reloads", function()
  local dir

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
  end)

  after_each(function()
    os.execute("rm -rf " .. dir)
  end)

  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
  end

  local function counter_saga(version, extra)
    return ([[
local choreo = require "choreo"
choreo.saga("Counter", {
  version = %d,
  starts = { "Tick" },
  correlate = { Tick = "id" },
  on = { Tick = function(state, msg, ctx)
    state.n = (state.n or 0) + 1
    state.code = %d
    if state.n == 1 then ctx:timeout(10, "Nudge", {}) end
  end,
  Nudge = function(state) state.nudged = %d end },
  %s
})
]]):format(version, version, version, extra or "")
  end

  it("rejects bad definitions at load with file:line", function()
    local cases = {
      { 'choreo.saga("S", { starts = { "A" } })', "'on' must map" },
      { 'choreo.saga("S", { starts = { "A" }, on = { A = 1 } })', "is not a function" },
      { 'choreo.saga("S", { starts = { "A" }, correlate = { B = "x" }, on = { A = function() end } })',
        "correlate entry for 'B' has no handler" },
      { 'choreo.saga("S", { on = { A = function() end } })', "'starts' must list" },
    }
    for _, case in ipairs(cases) do
      write("bad.lua", 'local choreo = require "choreo"\n' .. case[1] .. "\n")
      local ok, err = pcall(testing.host, dir)
      assert.is_false(ok)
      assert.matches("bad.lua:2:", err, 1, true)
      assert.matches(case[2], err, 1, true)
    end
  end)

  it("keeps running instances and their timeouts across a reload; migrate upgrades the state", function()
    write("counter.lua", counter_saga(1))
    local host = testing.host(dir)
    host:deliver("Tick", { id = "a" })
    assert.same({ n = 1, code = 1 }, host:saga("Counter", "a"))
    assert.equal(1, host:timeouts())
    write("counter.lua", counter_saga(2, "migrate = function(state, from) state.migrated_from = from; return state end,"))
    assert.is_true(host:reload())
    host:deliver("Tick", { id = "a" })
    assert.same({ n = 2, code = 2, migrated_from = 1 }, host:saga("Counter", "a"))
    assert.equal(1, host:timeouts())
    host:advance(10)
    assert.equal(2, host:saga("Counter", "a").nudged) -- the new code handled the old timeout
    write("counter.lua", "this is not lua")
    local ok, err = host:reload()
    assert.is_nil(ok)
    assert.matches("counter.lua:1:", err, 1, true)
    host:deliver("Tick", { id = "a" })
    assert.equal(3, host:saga("Counter", "a").n)
  end)
end)
