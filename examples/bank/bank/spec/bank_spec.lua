local testing = require "choreo.testing"

local function types(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = m.type end
  return out
end

local function balance(host, id)
  local total = 0
  for _, e in ipairs(host:stream("Account/" .. id)) do
    if e.type == "Deposited" then total = total + e.data.amount end
    if e.type == "Withdrawn" then total = total - e.data.amount end
  end
  return total
end

local function open_with(host, id, amount)
  assert.is_true(host:send("Open", { owner = "owner " .. id }, { subject = "Account/" .. id }))
  if amount then assert.is_true(host:send("Deposit", { amount = amount }, { subject = "Account/" .. id })) end
end

describe("bank", function()
  it("transfers between two accounts", function()
    local host = testing.host()
    open_with(host, 1, 100)
    open_with(host, 2)
    assert.is_true(host:send("RequestTransfer", { from = 1, to = 2, amount = 30 }))
    assert.same({ 70, 30 }, { balance(host, 1), balance(host, 2) })
    assert.same({ from = 1, to = 2, amount = 30 }, host.published[#host.published].data)
    assert.equal("TransferCompleted", host.published[#host.published].type)
  end)

  it("fails a transfer the first account cannot pay, touching nothing", function()
    local host = testing.host()
    open_with(host, 1, 10)
    open_with(host, 2)
    assert.is_true(host:send("RequestTransfer", { from = 1, to = 2, amount = 30 }))
    assert.same({ 10, 0 }, { balance(host, 1), balance(host, 2) })
    local last = host.published[#host.published]
    assert.same({ "TransferFailed", "insufficient funds", false }, { last.type, last.data.reason, last.data.refunded })
  end)

  it("pays the money back when the second account refuses it", function()
    local host = testing.host()
    open_with(host, 1, 100)
    assert.is_true(host:send("RequestTransfer", { from = 1, to = 3, amount = 30 }))
    assert.equal(100, balance(host, 1))
    assert.same({ "Opened", "Deposited", "Withdrawn", "Deposited" }, types(host:stream("Account/1")))
    local last = host.published[#host.published]
    assert.same({ "TransferFailed", "no such account", true }, { last.type, last.data.reason, last.data.refunded })
    assert.is_nil(host:saga("Transfer", last.correlationid))
  end)

  it("serves each account's statement and the balances as queries", function()
    local host = testing.host()
    open_with(host, 1, 100)
    open_with(host, 2)
    host:send("RequestTransfer", { from = 1, to = 2, amount = 30 })
    local statement = host:query("statement", { account = "1" })
    assert.equal(70, statement.balance)
    assert.same({ "Deposited", "Withdrawn" }, { statement.lines[1].type, statement.lines[2].type })
    assert.same({ 2, 3 }, { statement.lines[1].version, statement.lines[2].version })
    assert.same({ { account = "1", balance = 70 }, { account = "2", balance = 30 } }, host:query("balances"))
  end)

  it("reads accounts opened by the first release, whose Opened named the owner `name`", function()
    local host = testing.host()
    host:given("Account/9", { { type = "Opened", data = { name = "ada" }, schema = "v1" } })
    assert.is_true(host:send("Deposit", { amount = 5 }, { subject = "Account/9" }))
    local statement = host:query("statement", { account = "9" })
    assert.same({ "ada", 5 }, { statement.owner, statement.balance }) -- the projection saw `owner`
    local opened = host:stream("Account/9")[1]
    assert.same({ name = "ada" }, opened.data) -- kept as written
    assert.same({ "Opened", "v1" }, { opened.type, opened.dataschema })
  end)

  it("builds the statement's second version from the streams: the same lines, balances kept", function()
    local here = os.getenv("CHOREO_TEST_DIR")
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute(("mkdir '%s' && cp '%s'/*.lua '%s'"):format(dir, here, dir)))
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    local host = testing.host(dir, { name = "bank" })
    open_with(host, 1, 100)
    open_with(host, 2)
    host:send("RequestTransfer", { from = 1, to = 2, amount = 30 })
    local before = { host:query("statement", { account = "1" }), host:query("balances") }
    assert.is_true(os.execute(("cp '%s/../statement-v2.lua' '%s/statement.lua'"):format(here, dir)))
    assert.is_true(host:reload())
    assert.same({ 2, 2 }, { host:projections()[1].version, host:projections()[1].live })
    assert.same(before, { host:query("statement", { account = "1" }), host:query("balances") })
    assert.same({ version = 3, type = "Withdrawn", amount = 30, balance = 70 },
      (function(l) l.time = nil return l end)(host:query("statement", { account = "1" }).lines[2]))
  end)
end)
