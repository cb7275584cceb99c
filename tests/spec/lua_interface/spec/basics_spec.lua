local testing = require "choreo.testing"

describe("the Lua interface", function()
  it("delivers a message and collects what the handler published", function()
    local host = testing.host()
    assert.is_true(host:deliver("Echo", { n = 1, list = { 1, 2, 3 } }))
    assert.equal("Echoed", host.published[1].type)
    assert.same({ n = 1, list = { 1, 2, 3 } }, host.published[1].data)
  end)
end)
