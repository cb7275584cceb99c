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
end)
