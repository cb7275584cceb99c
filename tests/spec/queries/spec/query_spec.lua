local testing = require "choreo.testing"

describe("queries", function()
  local host

  before_each(function()
    host = testing.host(nil, { instructions = 100000 })
    host:deliver("Entry", { account = "a", amount = 5 })
    host:deliver("Entry", { account = "a", amount = 7 })
    host:deliver("Entry", { account = "b", amount = 1 })
  end)

  it("answers with what the function returns, from its arguments", function()
    assert.same({ account = "a", balance = 12, entries = 2 }, host:query("balance", { account = "a" }))
    assert.same({ { account = "a", balance = 12 }, { account = "b", balance = 1 } }, host:query("accounts"))
  end)

  it("may only read: writes, schema changes, pragmas and ATTACH are refused", function()
    for _, name in ipairs({ "write", "attach", "pragma", "schema" }) do
      local result, err = host:query(name)
      assert.is_nil(result)
      assert.matches("a query may only read", err, 1, true)
    end
    assert.equal(3, host.db:one("select count(*) as n from entries").n)
  end)

  it("names an unknown query, and reports a failing one with its error", function()
    local result, err = host:query("nope")
    assert.is_nil(result)
    assert.equal("no query named 'nope'", err)
    result, err = host:query("fails")
    assert.is_nil(result)
    assert.matches("ledger.lua:%d+: the ledger is closed", err)
    result, err = host:query("function")
    assert.is_nil(result)
    assert.matches("query function returned what cannot be answered", err, 1, true)
  end)

  it("runs under the instruction budget, and the host goes on", function()
    local result, err = host:query("forever")
    assert.is_nil(result)
    assert.matches("instruction limit", err, 1, true)
    assert.is_true(host:deliver("Entry", { account = "b", amount = 2 }))
    assert.equal(3, host:query("balance", { account = "b" }).balance)
  end)
end)
