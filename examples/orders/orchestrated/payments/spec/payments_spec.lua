local testing = require "choreo.testing"

describe("orchestrated payments", function()
  it("captures, declines over the limit, and stays silent for 13", function()
    local host = testing.host()
    host:send("CapturePayment", { order = 1, amount = 30 }, { source = "fulfilment" })
    host:send("CapturePayment", { order = 2, amount = 3000 }, { source = "fulfilment" })
    host:send("CapturePayment", { order = 3, amount = 13 }, { source = "fulfilment" })
    assert.equal(2, #host.replies)
    assert.equal("PaymentCaptured", host.replies[1].type)
    assert.equal("PaymentFailed", host.replies[2].type)
  end)
end)
