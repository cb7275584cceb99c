local testing = require "choreo.testing"

describe("payments", function()
  it("captures a placed order", function()
    local host = testing.host()
    assert.is_true(host:deliver("OrderPlaced", { order = 3, total = 40 }, { source = "orders" }))
    assert.same({ order = 3, amount = 40 }, host.published[1].data)
    assert.equal(40, host.db:one("select amount from payments where order_id = 3").amount)
  end)

  it("declines an order over the limit and charges nothing", function()
    local host = testing.host()
    host:deliver("OrderPlaced", { order = 4, total = 5000 }, { source = "orders" })
    assert.equal("PaymentDeclined", host.published[1].type)
    assert.is_nil(host.db:one("select * from payments where order_id = 4"))
  end)

  it("replies to the sender with a receipt", function()
    local host = testing.host()
    host:deliver("OrderPlaced", { order = 5, total = 40 }, { source = "orders" })
    host:deliver("IssueReceipt", { order = 5 }, { source = "orders", kind = "command" })
    local reply = host.replies[1]
    assert.equal("orders", reply.to)
    assert.equal("ReceiptIssued", reply.type)
    assert.same({ order = 5, receipt = "R-000005" }, reply.data)
    assert.equal("orders/2", reply.causationid)
  end)
end)
