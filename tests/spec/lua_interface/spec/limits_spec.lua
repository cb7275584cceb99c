-- The instruction budget and the memory ceiling turn runaway handlers into ordinary failures.
-- A handler cut off by one is not tried again at once (it would hold the host as long again):
-- it goes straight to the delayed retries.
local testing = require "choreo.testing"
local h = require "spec.helpers"

local attempts = h.attempts

local function echo_works(host, n)
  assert.is_true(host:deliver("Echo", { n = n }))
  local echoed = h.data_of(host.published, "Echoed")
  assert.same({ n = n }, echoed[#echoed])
end

describe("the instruction limit", function()
  it("cuts off an endless loop; the host keeps working", function()
    local host = testing.host(nil, { instructions = 1e6 })
    local ok, err = host:deliver("Spin", {})
    assert.is_false(ok)
    assert.matches("instruction limit", err, 1, true)
    assert.equal(1, attempts(host, "Spin"))
    assert.same({}, h.of_type(host.published, "SpinStarted"))
    echo_works(host, 1)
    echo_works(host, 2)
  end)

  it("cannot be swallowed by a pcall inside the handler", function()
    local host = testing.host(nil, { instructions = 1e6 })
    local ok, err = host:deliver("SpinInPcall", {})
    assert.same({}, h.data_of(host.published, "SpinSwallowed"))
    assert.is_false(ok)
    assert.matches("instruction limit", err, 1, true)
    echo_works(host, 1)
  end)

  it("cannot be swallowed by a pcall in a loop either", function()
    local host = testing.host(nil, { instructions = 1e6 })
    local ok, err = host:deliver("SpinInPcallLoop", {})
    assert.same({}, h.data_of(host.published, "SpinEscaped"))
    assert.is_false(ok)
    assert.matches("instruction limit", err, 1, true)
    assert.equal(1, attempts(host, "SpinInPcallLoop"))
    echo_works(host, 1)
  end)

  it("leads to retries and the dead letters like any failure #retries", function()
    local host = testing.host(nil, { instructions = 1e6 })
    assert.is_false((host:deliver("Spin", {})))
    assert.is_false((host:advance(1)))
    assert.is_false((host:advance(5)))
    assert.is_true(host:advance(29.9))
    assert.is_false((host:advance(0.1)))
    assert.equal(4, attempts(host, "Spin"))
    local dead = host:dead_letters()
    assert.equal(1, #dead)
    assert.matches("instruction limit", dead[1].error, 1, true)
    assert.equal(6, dead[1].attempts) -- by the schedule: the three at once count as one
  end)
end)

describe("the instruction limit in SQL", function()
  it("interrupts a query that never ends, rolls it back; the host keeps working", function()
    local host = testing.host(nil, { instructions = 1e6 })
    local ok, err = host:deliver("EndlessQuery", {})
    assert.is_false(ok)
    assert.matches("failures.lua:%d+: SQL interrupted: exceeded the instruction limit %(1000000%)", err)
    assert.same({}, h.of_type(host.published, "QueryStarted"))
    echo_works(host, 1)
  end)

  it("leads to the dead letters like any failure", function()
    local host = testing.host(nil, { instructions = 1e6 })
    assert.is_false((host:deliver("EndlessQuery", {})))
    for _, wait in ipairs({ 1, 5, 30 }) do assert.is_false((host:advance(wait))) end
    local dead = host:dead_letters()
    assert.equal(1, #dead)
    assert.matches("instruction limit", dead[1].error, 1, true)
  end)
end)

describe("the memory limit", function()
  it("fails a handler that builds a huge table; later messages work", function()
    local host = testing.host(nil, { memory = 32 * 1024 * 1024 })
    local ok, err = host:deliver("Hog", {})
    assert.is_false(ok)
    assert.matches("memory limit", err, 1, true)
    assert.matches("failures.lua:%d+: exceeded the memory limit", err) -- where it ran out
    assert.equal(1, attempts(host, "Hog"))
    assert.same({}, h.of_type(host.published, "HogStarted"))
    assert.same({}, h.of_type(host.published, "HogDone"))
    echo_works(host, 1)
    -- The memory came back: it can fail the same way again, and recover again.
    ok, err = host:deliver("Hog", {})
    assert.is_false(ok)
    assert.matches("memory limit", err, 1, true)
    echo_works(host, 2)
  end)

  it("names where one huge allocation was refused", function()
    local host = testing.host(nil, { memory = 32 * 1024 * 1024 })
    local ok, err = host:deliver("HugeString", {})
    assert.is_false(ok)
    assert.matches("failures.lua:%d+: exceeded the memory limit", err)
    echo_works(host, 1)
  end)
end)

describe("the message limit", function()
  for _, how in ipairs({ "publish", "send", "reply", "timeout" }) do
    it("fails a handler whose ctx:" .. how .. " is too big, and commits nothing of it", function()
      local host = testing.host()
      local ok, err = host:deliver("Big", { bytes = 2 * 1024 * 1024, how = how })
      assert.is_false(ok)
      assert.matches("larger than the limit of 1048576 bytes", err, 1, true)
      assert.equal(0, #h.of_type(host.emitted, "BigOut"))
      assert.equal(0, host:timeouts())
      echo_works(host, 1)
    end)
  end

  it("lets a message just under the limit through", function()
    local host = testing.host()
    assert.is_true(host:deliver("Big", { bytes = 1000 * 1000 }))
    assert.equal(1, #h.of_type(host.published, "BigOut"))
  end)

  it("is set per host with max_message", function()
    local host = testing.host(nil, { max_message = 4096 })
    local ok, err = host:deliver("Big", { bytes = 5000 })
    assert.is_false(ok)
    assert.matches("larger than the limit of 4096 bytes", err, 1, true)
    assert.is_true(host:deliver("Big", { bytes = 3000 }))
  end)
end)
