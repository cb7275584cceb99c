-- Retry policies declared per handler (choreo.on's options, a saga's retry), and dead letters
-- sent back by hand: the documented schedule from the start, under the letter's own id.
local testing = require "choreo.testing"
local h = require "spec.helpers"

local attempts = h.attempts

local function retries(host)
  return host.db:one("select count(*) as n from choreo_retries").n
end

describe("a retry policy", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)
  after_each(function() host:close() end)

  it("sets the attempts at once and the delays after them", function()
    local ok, err = host:deliver("Patient", { key = "p", succeed_on = 1000 })
    assert.is_false(ok)
    assert.matches("flaky failure p attempt 2", err, 1, true)
    assert.equal(2, attempts(host, "p"))
    assert.equal(1, retries(host))
    assert.is_true(host:advance(9.9))
    assert.equal(2, attempts(host, "p"))
    assert.is_false((host:advance(0.1)))
    assert.equal(3, attempts(host, "p"))
    assert.equal(0, retries(host))
    local dead = host:dead_letters()
    assert.equal(1, #dead)
    assert.equal("Patient", dead[1].type)
    assert.equal(3, dead[1].attempts)
  end)

  it("with one attempt and no delays dead-letters at the first failure", function()
    assert.is_false((host:deliver("Impatient", { key = "i", succeed_on = 2 })))
    assert.equal(1, attempts(host, "i"))
    assert.equal(0, retries(host))
    assert.equal(1, #host:dead_letters())
  end)

  it("declared on a prefix covers its types, and an exact type's own policy wins", function()
    assert.is_false((host:deliver("Policy.Any", { key = "a", succeed_on = 1000 })))
    assert.equal(3, attempts(host, "a")) -- attempts left at the default
    assert.is_false((host:advance(0.5)))
    assert.equal(4, attempts(host, "a"))
    assert.equal(1, #host:dead_letters())

    -- Policy.Exact has its own policy and also matches Policy.*: both handlers run once per
    -- attempt, under the exact type's policy (one attempt, then one after 2 s).
    assert.is_false((host:deliver("Policy.Exact", { key = "e", succeed_on = 1000 })))
    assert.equal(1, attempts(host, "e"))
    assert.is_true(host:advance(1.9))
    assert.is_false((host:advance(0.1)))
    assert.equal(2, attempts(host, "e"))
    assert.equal(2, #host:dead_letters())
  end)

  it("of a saga applies to every message it takes", function()
    assert.is_false((host:deliver("StubbornStart", { key = "s", succeed_on = 1000 })))
    assert.equal(2, attempts(host, "s"))
    assert.equal(0, retries(host))
    assert.equal(1, #host:dead_letters())
    assert.is_nil(host:saga("Stubborn", "s"))
  end)
end)

describe("a dead letter sent back by hand", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)
  after_each(function() host:close() end)

  local function kill(key, succeed_on)
    assert.is_false((host:deliver("Flaky", { key = key, succeed_on = succeed_on })))
    assert.is_false((host:advance(1)))
    assert.is_false((host:advance(5)))
    assert.is_false((host:advance(30)))
    local dead = host:dead_letters()
    assert.equal(1, #dead)
    assert.equal(6, dead[1].attempts)
    return dead[1].id
  end

  it("gets the whole schedule again and dies under the same id", function()
    local id = kill("k", 1000)
    assert.is_true(host:dead_retry(id))
    assert.same({ nil, "the letter is being retried already" }, { host:dead_retry(id) })
    local dead = host:dead_letters()
    assert.equal(1, #dead)
    assert.is_true(dead[1].retrying)
    assert.equal(1, dead[1].revived)

    -- Three attempts at once, then after 1 s, 5 s and 30 s: the documented schedule.
    local ok, err = host:advance(0)
    assert.is_false(ok)
    assert.matches("attempt 9", err, 1, true)
    assert.equal(9, attempts(host, "k"))
    assert.is_true(host:advance(0.9))
    assert.is_false((host:advance(0.1)))
    assert.equal(10, attempts(host, "k"))
    assert.is_false((host:advance(5)))
    assert.is_true(host:advance(29.9))
    assert.equal(11, attempts(host, "k"))
    assert.is_false((host:advance(0.1)))
    assert.equal(12, attempts(host, "k"))

    dead = host:dead_letters()
    assert.equal(1, #dead)
    assert.equal(id, dead[1].id)
    assert.is_false(dead[1].retrying)
    assert.equal(1, dead[1].revived)
    assert.equal(6, dead[1].attempts)
    assert.matches("flaky failure k attempt 12", dead[1].error, 1, true)
  end)

  it("that succeeds at last leaves the dead letters, with its effects committed", function()
    local id = kill("k", 8)
    assert.is_true(host:dead_retry(id))
    assert.is_true(host:advance(0))
    assert.equal(8, attempts(host, "k"))
    assert.same({}, host:dead_letters())
    assert.equal(0, retries(host))
    assert.same({ { key = "k", attempt = 8 } }, h.data_of(host.published, "FlakyEffect"))
    assert.same({ nil, "no such dead letter" }, { host:dead_retry(id) })
  end)
end)

describe("choreo.on's options", function()
  local dir
  before_each(function() dir = h.tempdir() end)
  after_each(function() dir.remove() end)

  local function load_error(options)
    dir.write("bad.lua", "local choreo = require 'choreo'\n\nchoreo.on('T', function() end, " ..
      options .. ")\n")
    local ok, err = pcall(testing.host, dir.path)
    assert.is_false(ok)
    assert.matches("bad.lua:3:", err, 1, true)
    return err
  end

  it("are checked when the script loads, with file:line", function()
    assert.matches("attempts must be an integer from 1 to 100", load_error("{ attempts = 0 }"), 1, true)
    assert.matches("attempts must be an integer", load_error("{ attempts = 1.5 }"), 1, true)
    assert.matches("backoff must be a list of seconds", load_error("{ backoff = 5 }"), 1, true)
    assert.matches("backoff[2] must be a number of seconds", load_error("{ backoff = { 1, -1 } }"), 1, true)
    assert.matches("at most 16", load_error("{ backoff = { " .. string.rep("1, ", 17) .. "} }"), 1, true)
    assert.matches("unknown option 'attempt'", load_error("{ attempt = 3 }"), 1, true)
    assert.matches("table of options expected", load_error("'fast'"), 1, true)
  end)

  it("declare a type's policy once", function()
    dir.write("twice.lua", "local choreo = require 'choreo'\n" ..
      "choreo.on('T', function() end, { attempts = 2 })\n" ..
      "choreo.on('T', function() end)\n" ..
      "choreo.on('T', function() end, { attempts = 5 })\n")
    local ok, err = pcall(testing.host, dir.path)
    assert.is_false(ok)
    assert.matches("twice.lua:4: choreo.on: T has a retry policy already", err, 1, true)
  end)

  it("of a saga are checked with the saga's name", function()
    dir.write("saga.lua", "local choreo = require 'choreo'\n" ..
      "choreo.saga('S', { starts = { 'A' }, correlate = { A = 'k' }, on = { A = function() end },\n" ..
      "  retry = { attempts = -1 } })\n")
    local ok, err = pcall(testing.host, dir.path)
    assert.is_false(ok)
    assert.matches("saga.lua:2: choreo.saga S: attempts must be an integer", err, 1, true)
  end)
end)
