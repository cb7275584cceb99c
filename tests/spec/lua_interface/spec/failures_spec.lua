-- A failing handler: savepoint rollback, three immediate attempts, delayed retries after 1 s,
-- 5 s and 30 s, then the dead letters; other messages keep flowing meanwhile.
local testing = require "choreo.testing"
local h = require "spec.helpers"

local attempts = h.attempts

local function effects(host, key)
  local list = {}
  for row in host.db:rows("select attempt from flaky_effects where key = ? order by rowid", key) do
    list[#list + 1] = row.attempt
  end
  return list
end

local function retries(host)
  return host.db:one("select count(*) as n from choreo_retries").n
end

local function echo_works(host, n)
  assert.is_true(host:deliver("Echo", { n = n }))
  local echoed = h.data_of(host.published, "Echoed")
  assert.same({ n = n }, echoed[#echoed])
end

describe("a failing handler", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)

  it("that succeeds on its second attempt keeps only that attempt's effects", function()
    assert.is_true(host:deliver("Flaky", { key = "k", succeed_on = 2 }))
    assert.equal(2, attempts(host, "k"))
    assert.same({ 2 }, effects(host, "k"))
    assert.same({ { key = "k", attempt = 2 } }, h.data_of(host.published, "FlakyEffect"))
    assert.equal(0, retries(host))
    assert.same({}, host:dead_letters())
  end)

  it("is tried three times at once, then after 1 s, 5 s and 30 s, then dead-lettered #retries", function()
    local ok, err = host:deliver("Flaky", { key = "k", succeed_on = 1000 })
    assert.is_false(ok)
    assert.matches("failures.lua:%d+: flaky failure k attempt 3", err)
    assert.equal(3, attempts(host, "k"))
    -- Each attempt rolled back its own db writes and emissions.
    assert.same({}, effects(host, "k"))
    assert.same({}, h.of_type(host.published, "FlakyEffect"))
    assert.equal(1, retries(host))
    assert.same({}, host:dead_letters())

    -- Not yet due.
    assert.is_true(host:advance(0.5))
    assert.equal(3, attempts(host, "k"))
    echo_works(host, 1)

    ok, err = host:advance(0.5) -- 1 s after the failure
    assert.is_false(ok)
    assert.matches("failures.lua:%d+: flaky failure k attempt 4", err)
    assert.equal(4, attempts(host, "k"))
    assert.equal(1, retries(host))
    echo_works(host, 2)

    assert.is_true(host:advance(4.9))
    assert.equal(4, attempts(host, "k"))
    ok, err = host:advance(0.1) -- 5 s
    assert.is_false(ok)
    assert.matches("attempt 5", err, 1, true)
    assert.equal(5, attempts(host, "k"))
    assert.same({}, host:dead_letters())
    echo_works(host, 3)

    assert.is_true(host:advance(29))
    assert.equal(5, attempts(host, "k"))
    ok, err = host:advance(1) -- 30 s
    assert.is_false(ok)
    assert.matches("attempt 6", err, 1, true)
    assert.equal(6, attempts(host, "k"))
    assert.equal(0, retries(host))

    local dead = host:dead_letters()
    assert.equal(1, #dead)
    assert.equal("Flaky", dead[1].type)
    assert.equal(6, dead[1].attempts)
    assert.matches("failures.lua:%d+: flaky failure k attempt 6", dead[1].error)
    assert.matches("stack traceback:", dead[1].traceback, 1, true)
    assert.matches("failures.lua:%d+: in function", dead[1].traceback)

    -- Dead means no more attempts, and the rest still works.
    assert.is_true(host:advance(3600))
    assert.equal(6, attempts(host, "k"))
    assert.same({}, effects(host, "k"))
    assert.same({}, h.of_type(host.published, "FlakyEffect"))
    echo_works(host, 4)
  end)

  it("that recovers on a delayed retry commits that retry's effects #retries", function()
    assert.is_false((host:deliver("Flaky", { key = "k", succeed_on = 5 })))
    assert.is_false((host:advance(1)))
    assert.is_true(host:advance(5))
    assert.equal(5, attempts(host, "k"))
    assert.same({ 5 }, effects(host, "k"))
    assert.same({ { key = "k", attempt = 5 } }, h.data_of(host.published, "FlakyEffect"))
    local effect = h.of_type(host.published, "FlakyEffect")[1]
    assert.equal("test/1", effect.causationid)
    assert.equal(0, retries(host))
    assert.same({}, host:dead_letters())
  end)

  it("does not hold up other messages, failing or not #retries", function()
    assert.is_false((host:deliver("Flaky", { key = "a", succeed_on = 1000 })))
    echo_works(host, 1)
    assert.is_true(host:deliver("Flaky", { key = "b", succeed_on = 1 }))
    assert.is_false((host:deliver("Flaky", { key = "c", succeed_on = 4 })))
    assert.equal(2, retries(host))
    assert.is_false((host:advance(1))) -- a fails again, c succeeds
    assert.same({ 1 }, effects(host, "b"))
    assert.same({ 4 }, effects(host, "c"))
    assert.same({}, effects(host, "a"))
    assert.equal(1, retries(host))
    echo_works(host, 2)
  end)

  it("calling os.exit fails the handler and leaves the host running", function()
    local ok, err = host:deliver("Exit", {})
    assert.is_false(ok)
    assert.matches("os.exit is not allowed", err, 1, true)
    assert.same({}, h.of_type(host.published, "BeforeExit"))
    echo_works(host, 1)
  end)
end)
