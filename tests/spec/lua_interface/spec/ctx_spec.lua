-- Where the interface can and cannot be used: ctx outside a handler, require "choreo" in a spec.
local testing = require "choreo.testing"
local h = require "spec.helpers"

describe("ctx outside a handler", function()
  it("raises a clear error (called from a finalizer when the old state is closed)", function()
    local host = testing.host()
    assert.is_true(host:deliver("KeepCtx", {}))
    assert.is_nil(host.db:one("select * from outside_calls"))
    -- The reload swaps in a new state and closes the old one; its finalizers run then, outside
    -- any handler.
    assert.is_true(host:reload())
    local results = {}
    for row in host.db:rows("select what, result from outside_calls") do
      results[row.what] = row.result
    end
    assert.matches("ctx:publish called outside a handler", results.publish, 1, true)
    assert.matches("ctx:send called outside a handler", results.send, 1, true)
    assert.matches("ctx:reply called outside a handler", results.reply, 1, true)
    assert.same({}, h.of_type(host.emitted, "Late"))
  end)

  it("is still inside the handler in a coroutine the handler runs", function()
    local host = testing.host()
    assert.is_true(host:deliver("CoroutineCtx", {}))
    assert.equal(1, #h.of_type(host.published, "FromCoroutine"))
  end)
end)

describe("ctx", function()
  it("is the same object for the state's life, even after choreo is required again", function()
    local host = testing.host()
    assert.is_true(host:deliver("RequireAgain", {}))
    assert.is_true(host:deliver("AfterRequireAgain", {}))
    assert.same({ { same = true, fresh_table = true } }, h.data_of(host.published, "SameCtx"))
  end)
end)

describe("require 'choreo' in a spec", function()
  it("raises a clear error pointing to choreo.testing", function()
    local ok, err = pcall(require, "choreo")
    assert.is_false(ok)
    assert.matches("works in a service's scripts; specs use choreo.testing", err, 1, true)
    -- Still not loaded: asking again says the same.
    ok, err = pcall(require, "choreo")
    assert.is_false(ok)
    assert.matches("choreo.testing", err, 1, true)
  end)
end)
