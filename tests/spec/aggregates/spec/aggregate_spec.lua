local testing = require "choreo.testing"

local function types(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = m.type end
  return out
end

local function account(host, id)
  return host.db:one("select count(*) as n from deposits where stream = ?", "Account/" .. id).n
end

describe("aggregates", function()
  it("decides a command on the folded state and appends the events to its stream", function()
    local host = testing.host()
    assert.is_true(host:send("Open", nil, { subject = "Account/42" }))
    assert.is_true(host:send("Deposit", { account = 42, amount = 10 }))
    assert.is_true(host:send("Withdraw", { amount = 4 }, { subject = "Account/42" }))
    local stream = host:stream("Account/42")
    assert.same({ "Opened", "Deposited", "Withdrawn" }, types(stream))
    for v, e in ipairs(stream) do
      assert.equal(v, e.streamversion)
      assert.equal("Account/42", e.subject)
      assert.equal("event", e.kind)
      -- Each in its type's current shape: Deposited has an upcaster from v1, so is at v2.
      assert.equal(e.type == "Deposited" and "v2" or "v1", e.dataschema)
    end
    -- Each event is an ordinary event of this host's, caused by its command.
    assert.same({ "Opened", "Deposited", "Withdrawn" }, types(host.published))
    assert.equal(host.published[2].causationid:match("^test/"), "test/")
    assert.equal(1, account(host, 42))
  end)

  it("rejects what decide refuses with a CommandRejected reply, not a failure", function()
    local host = testing.host()
    host:send("Deposit", { account = 7, amount = 5 })
    assert.is_true(host:send("Withdraw", { account = 7, amount = 50 }))
    assert.is_true(host:send("Open", { account = 7 }))
    assert.same({ "CommandRejected", "CommandRejected" }, types(host.replies))
    assert.same({ reason = "insufficient funds", stream = "Account/7", command = "Withdraw", version = 1 },
      host.replies[1].data)
    assert.equal("already open", host.replies[2].data.reason)
    assert.equal("test", host.replies[1].to)
    assert.equal(1, #host:stream("Account/7"))
  end)

  it("rejects a command whose expected version is not the stream's", function()
    local host = testing.host()
    assert.is_true(host:send("Deposit", { account = 1, amount = 5 }, { expect = 0 }))
    assert.is_true(host:send("Deposit", { account = 1, amount = 5 }, { expect = 0 }))
    assert.is_true(host:send("Deposit", { account = 1, amount = 6 }, { expect = 1 }))
    assert.same({ "CommandRejected" }, types(host.replies))
    assert.same({ reason = "conflict", stream = "Account/1", command = "Deposit", version = 1 }, host.replies[1].data)
    assert.equal(2, #host:stream("Account/1"))
  end)

  it("accepts a command that decides nothing without touching the stream", function()
    local host = testing.host()
    assert.is_true(host:send("Noop", { account = 3 }))
    assert.equal(0, #host:stream("Account/3"))
    assert.equal(0, #host.replies)
  end)

  it("upcasts old events on read: evolve and handlers see the current shape", function()
    local host = testing.host()
    host:given("Account/9", { { type = "Deposited", data = { cents = 1200 }, schema = "v1" } })
    assert.same({ cents = 1200 }, host:stream("Account/9")[1].data) -- stored as written
    assert.equal(12, host.db:one("select amount from deposits where stream = 'Account/9'").amount)
    assert.is_true(host:send("Deposit", { account = 9, amount = 3 }))
    assert.is_true(host:send("Withdraw", { account = 9, amount = 15 }))
    assert.equal(0, #host.replies)
    -- New events are written in their type's current shape: v2 for Deposited, upcast once.
    local stream = host:stream("Account/9")
    assert.same({ "v1", "v2", "v1" }, { stream[1].dataschema, stream[2].dataschema, stream[3].dataschema })
    assert.same({ amount = 3 }, stream[2].data)
    assert.is_true(host:send("Withdraw", { account = 9, amount = 1 }))
    assert.equal("insufficient funds", host.replies[1].data.reason)
  end)

  it("snapshots every 5 folded events and loads the same state from the snapshot", function()
    local host = testing.host()
    for i = 1, 10 do assert.is_true(host:send("Deposit", { account = 5, amount = i })) end
    -- taken as the 5th and the 10th command appended (and folded) their events
    local snap = host.db:one("select version from choreo_snapshots where stream = 'Account/5'")
    assert.equal(10, snap.version)
    for i = 11, 12 do assert.is_true(host:send("Deposit", { account = 5, amount = i })) end
    assert.equal(10, host.db:one("select version from choreo_snapshots where stream = 'Account/5'").version)
    assert.is_true(host:deliver("Audit", { account = 5 }))
    assert.same({ account = "5", balance = 78, version = 12 },
      host.db:one("select account, balance, version from audits"))
    -- A snapshot that other code folded (another fingerprint) is ignored, and replaced by the
    -- next fold that goes far enough. (A reload empties the states kept in memory, which would
    -- otherwise spare the fold a look at the snapshot.)
    host.db:exec("update choreo_snapshots set fingerprint = 'other code', version = 12")
    assert.is_true(host:reload())
    assert.is_true(host:deliver("Audit", { account = 5 }))
    assert.equal(78, host.db:one("select balance from audits where rowid = 2").balance)
    local again = host.db:one("select version, fingerprint from choreo_snapshots")
    assert.equal(12, again.version)
    assert.are_not.equal("other code", again.fingerprint)
  end)

  it("forgets what a rolled-back handler folded: the next load sees only committed events", function()
    local host = testing.host()
    host:send("Deposit", { account = 4, amount = 5 })
    local ok = host:deliver("AppendThenFail", { account = 4 })
    assert.is_false(ok)
    assert.is_true(host:deliver("Audit", { account = 4 }))
    assert.same({ balance = 5, version = 1 }, host.db:one("select balance, version from audits"))
    assert.equal(1, #host:stream("Account/4"))
  end)

  it("folds events appended outside its commands: by a test's given, by ctx:append", function()
    local host = testing.host()
    assert.is_true(host:send("Deposit", { account = 8, amount = 5 })) -- its state now kept in memory
    host:given("Account/8", { { type = "Deposited", data = { amount = 10 }, schema = "v2" } })
    assert.is_true(host:send("Withdraw", { account = 8, amount = 15 }))
    assert.is_true(host:deliver("Import", { account = 8, amount = 4, expect = 3 }))
    assert.is_true(host:send("Withdraw", { account = 8, amount = 4 }))
    assert.is_true(host:send("Withdraw", { account = 8, amount = 1 }))
    assert.same({ "CommandRejected" }, types(host.replies))
    assert.same({ reason = "insufficient funds", stream = "Account/8", command = "Withdraw", version = 5 },
      host.replies[1].data)
  end)

  it("folds what a ctx:append appended before it failed, when the handler caught the error", function()
    local host = testing.host(nil, { max_message = 2000 })
    assert.is_true(host:send("Deposit", { account = 11, amount = 5 })) -- its state now kept in memory
    assert.is_true(host:deliver("ImportPartly", { account = 11, amount = 10 }))
    assert.equal(2, #host:stream("Account/11"))
    assert.is_true(host:send("Withdraw", { account = 11, amount = 12 }, { expect = 2 }))
    assert.equal(0, #host.replies)
    assert.equal(3, #host:stream("Account/11"))
  end)

  it("forgets what a command folded when another handler of it fails afterwards", function()
    local host = testing.host()
    local s = { subject = "Faulty/9" }
    local ok, err = host:send("Charge", { fail = true }, s)
    assert.is_false(ok)
    assert.matches("after the aggregate", err, 1, true)
    assert.equal(0, #host:stream("Faulty/9"))
    assert.is_true(host:send("Charge", {}, { subject = "Faulty/9", expect = 0 }))
    assert.equal(0, #host.replies)
    assert.equal(1, #host:stream("Faulty/9"))
  end)

  it("hands ctx:load a copy: changing it changes nothing for the next command", function()
    local host = testing.host()
    host:send("Deposit", { account = 6, amount = 5 })
    assert.is_true(host:deliver("Meddle", { account = 6 }))
    assert.is_true(host:send("Withdraw", { account = 6, amount = 5 }))
    assert.equal(0, #host.replies)
  end)

  it("lets any handler load an aggregate and append to a stream, with an expected version", function()
    local host = testing.host()
    host:send("Deposit", { account = 2, amount = 3 })
    assert.is_true(host:deliver("Import", { account = 2, amount = 4, expect = 1 }))
    assert.is_true(host:deliver("Import", { account = 2, amount = 4, expect = 1 }))
    local imports = {}
    for row in host.db:rows("select version, conflict from imports order by rowid") do
      imports[#imports + 1] = { row.version, row.conflict }
    end
    assert.same({ { 2, 0 }, { -1, 1 } }, imports)
    assert.is_true(host:deliver("Audit", { account = 2 }))
    assert.same({ balance = 7, version = 2 }, host.db:one("select balance, version from audits"))
  end)
end)

describe("aggregates given bad code or bad input", function()
  local function fails(host, type_, data, opts, pattern)
    local ok, err = host:send(type_, data, opts)
    assert.is_false(ok)
    assert.matches(pattern, err, 1, true)
  end

  it("fails a command that names no stream, and dead-letters it after its retries", function()
    local host = testing.host()
    fails(host, "Deposit", { amount = 1 }, nil,
      "Account: Deposit test/1 names no stream: give it the subject Account/<id> or the data field 'account'")
    fails(host, "Deposit", { amount = 1 }, { subject = "Other/1" }, "is not a stream of Account")
    for _, seconds in ipairs({ 1, 5, 30 }) do host:advance(seconds) end
    local dead = host:dead_letters()
    assert.equal(2, #dead)
    assert.equal("Deposit", dead[1].type)
  end)

  it("fails, never half-applies, when decide or evolve is wrong", function()
    local host = testing.host()
    local s = { subject = "Faulty/1" }
    fails(host, "NotAList", nil, s, "Faulty: decide of NotAList returned a string, not a list of events")
    fails(host, "NoReason", nil, s, "decide of NoReason returned nothing: return a list of events, or nil and a reason")
    fails(host, "UnknownEvent", nil, s, "returned a Mystery event, which evolve does not know")
    -- The events decide returns are folded before the command succeeds: one evolve cannot
    -- take is never appended, so the stream stays one its aggregate can fold.
    fails(host, "Explode", nil, s, "Faulty/1: evolve of Exploded (event 1) failed:")
    assert.equal(0, #host:stream("Faulty/1"))
  end)

  it("fails when an upcaster raises, naming it", function()
    local host = testing.host()
    host:given("Faulty/2", { { type = "Legacy", schema = "v1" } })
    fails(host, "ReadLegacy", nil, { subject = "Faulty/2" }, "upcaster of Legacy from v1 failed on Faulty/2 event 1: ")
    host:given("Faulty/3", { { type = "Legacy", schema = "v7" } })
    fails(host, "ReadLegacy", nil, { subject = "Faulty/3" },
      "Faulty/3 event 1 (Legacy) has schema v7, newer than this code knows (v2)")
  end)

  it("fails ctx:load of an aggregate that does not exist", function()
    local host = testing.host()
    local ok, err = host:deliver("LoadNothing")
    assert.is_false(ok)
    assert.matches("ctx:load: no aggregate named 'Nope'", err, 1, true)
  end)
end)
