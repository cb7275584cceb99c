-- In a handler, coroutine.resume and coroutine.wrap are choreo's, which let the watchdog arm the
-- coroutine running (bindings/scripts.c); they must behave as Lua's own in every other way.
local testing = require "choreo.testing"
local h = require "spec.helpers"
local cases = require "spec.coroutine_cases"

describe("coroutines in a handler", function()
  it("resume, yield, wrap and fail as with Lua's own functions", function()
    local host = testing.host()
    assert.is_true(host:deliver("CoroutineCases", {}))
    local got = h.data_of(host.published, "CoroutineResults")[1]
    local compared = 0
    for name, case in pairs(cases) do
      assert.equal(case(), got[name], name)
      compared = compared + 1
    end
    assert.is_true(compared >= 13)
  end)
end)
