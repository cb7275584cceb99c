-- choreo.on patterns and order, msg fields, and what ctx:publish/send/reply emit.
local testing = require "choreo.testing"
local h = require "spec.helpers"

describe("choreo.on", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)

  it("runs every handler of an exact type in registration order, then matching prefixes", function()
    assert.is_true(host:deliver("OrderPlaced", {}))
    assert.same({
      { handler = "exact 1", type = "OrderPlaced" },
      { handler = "exact 2", type = "OrderPlaced" },
      { handler = "exact 3", type = "OrderPlaced" },
      { handler = "prefix", type = "OrderPlaced" },
    }, h.data_of(host.published, "HandlerRan"))
  end)

  it("matches a prefix pattern against any type that starts with it", function()
    assert.is_true(host:deliver("OrderShipped", {}))
    assert.is_true(host:deliver("Order", {}))
    assert.same({
      { handler = "prefix", type = "OrderShipped" },
      { handler = "prefix", type = "Order" },
    }, h.data_of(host.published, "HandlerRan"))
  end)

  it("does not match types that only resemble the pattern", function()
    for _, type in ipairs({ "Orde", "order", "PreOrder", "orderPlaced", "OrderPlace" }) do
      assert.is_true(host:deliver(type, {}))
    end
    -- "OrderPlace" is not "OrderPlaced", but it does start with "Order".
    assert.same({ { handler = "prefix", type = "OrderPlace" } }, h.data_of(host.published, "HandlerRan"))
  end)

  it("finds a handler registered at run time, also for types already seen without one", function()
    assert.is_true(host:deliver("Late", {}))
    assert.is_true(host:deliver("Late", {}))
    assert.same({}, h.data_of(host.published, "LateHandlerRan"))
    assert.is_true(host:deliver("Subscribe", { type = "Late" }))
    assert.is_true(host:deliver("Late", {}))
    assert.same({ { type = "Late" } }, h.data_of(host.published, "LateHandlerRan"))
  end)

  it("keeps the log's seq contiguous when a handler rolls back a savepoint of its own", function()
    assert.is_true(host:deliver("OwnSavepoint", {}))
    assert.is_true(host:deliver("OwnSavepoint", {}))
    local types, seqs = {}, {}
    for _, m in ipairs(host.emitted) do
      types[#types + 1] = m.type
      seqs[#seqs + 1] = m.seq
    end
    assert.same({ "Before", "Kept", "Before", "Kept" }, types)
    for i = 2, #seqs do assert.equal(seqs[i - 1] + 1, seqs[i]) end
  end)

  it("has what a handler published in the log when its own SQL runs", function()
    assert.is_true(host:deliver("CountsItsOwn", {}))
    assert.same({ { n = 70 } }, h.data_of(host.published, "Counted"))
  end)

  it("ignores arguments to choreo.on after the handler", function()
    assert.is_true(host:deliver("ExtraArgs", {}))
    assert.equal(1, #h.data_of(host.published, "ExtraArgsRan"))
  end)

  it("skips a message nobody handles without failing it", function()
    assert.is_true(host:deliver("NobodyHandlesThis", { x = 1 }))
    assert.same({}, host.emitted)
    assert.same({}, host:dead_letters())
  end)

  it("stops at the first failing handler and rolls back the others' effects too", function()
    local ok, err = host:deliver("MultiFail", { fail = true })
    assert.is_false(ok)
    assert.matches("second handler fails", err, 1, true)
    assert.equal(0, host.db:one("select count(*) as n from multi_effects").n)
    assert.same({}, host.published)
    assert.is_true(host:deliver("MultiFail", { fail = false }))
    assert.equal(1, host.db:one("select count(*) as n from multi_effects").n)
    assert.equal(1, #h.of_type(host.published, "MultiFirstRan"))
  end)

  it("rejects a bad pattern or handler when the script registers it", function()
    local dir = h.tempdir()
    finally(dir.remove)
    dir.write("a.lua", 'require("choreo").on("", function() end)\n')
    local ok, err = pcall(testing.host, dir.path)
    assert.is_false(ok)
    assert.matches("a.lua:1:", err, 1, true)
    assert.matches("non-empty", err, 1, true)
    dir.write("a.lua", 'require("choreo").on("X", "not a function")\n')
    ok, err = pcall(testing.host, dir.path)
    assert.is_false(ok)
    assert.matches("a.lua:1:", err, 1, true)
    assert.matches("function expected", err, 1, true)
  end)
end)

describe("msg", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)

  it("carries id = source/seq, kind, time and the data", function()
    assert.is_true(host:deliver("Inspect", { a = 1 }, { source = "peer", subject = "order-7" }))
    local m = h.data_of(host.published, "Inspected")[1]
    assert.equal("Inspect", m.type)
    assert.equal("peer", m.source)
    assert.equal(1, m.seq)
    assert.equal("integer", m.seq_type)
    assert.equal("peer/1", m.id)
    assert.equal("event", m.kind)
    assert.is_nil(m.to)
    assert.equal("order-7", m.subject)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d", m.time)
    assert.same({ a = 1 }, m.data)
  end)

  it("numbers each source's messages separately", function()
    assert.is_true(host:deliver("Inspect", {}, { source = "a" }))
    assert.is_true(host:deliver("Inspect", {}, { source = "a" }))
    assert.is_true(host:deliver("Inspect", {}, { source = "b" }))
    local ids = {}
    for _, d in ipairs(h.data_of(host.published, "Inspected")) do ids[#ids + 1] = d.id end
    assert.same({ "a/1", "a/2", "b/1" }, ids)
  end)

  it("starts a new conversation: correlationid defaults to the message's own id", function()
    assert.is_true(host:deliver("Inspect", {}, { source = "peer" }))
    local m = h.data_of(host.published, "Inspected")[1]
    assert.equal("peer/1", m.correlationid)
    assert.is_nil(m.causationid)
  end)

  it("keeps a given correlationid", function()
    assert.is_true(host:deliver("Inspect", {}, { correlationid = "conv-42" }))
    assert.equal("conv-42", h.data_of(host.published, "Inspected")[1].correlationid)
  end)

  it("is a command addressed to this host when sent", function()
    assert.is_true(host:send("Inspect", {}, { source = "client" }))
    local m = h.data_of(host.published, "Inspected")[1]
    assert.equal("command", m.kind)
    assert.equal("svc", m.to)
  end)

  it("is not handled when it is a command for another host", function()
    assert.is_true(host:deliver("Inspect", {}, { kind = "command", to = "someone-else" }))
    assert.is_true(host:deliver("Inspect", {}, { kind = "reply", to = "someone-else" }))
    assert.same({}, host.published)
  end)

  it("of emitted messages: causationid is the handled message's id, correlation propagates", function()
    assert.is_true(host:deliver("Start", {}, { source = "peer" }))
    local middle = h.of_type(host.emitted, "Middle")[1]
    assert.equal("svc/1", middle.id)
    assert.equal("svc", middle.source)
    assert.equal(1, middle.seq)
    assert.equal("event", middle.kind)
    assert.equal("peer/1", middle.causationid)
    assert.equal("peer/1", middle.correlationid)
    -- Our own handler got Middle, as it arrived, and published End.
    local seen = h.of_type(host.emitted, "End")[1]
    assert.equal("svc/2", seen.id)
    assert.equal("svc/1", seen.causationid)
    assert.equal("peer/1", seen.correlationid)
    assert.same({ from = "peer/1" }, seen.data.data)
    assert.equal("svc/1", seen.data.id)
    assert.equal("peer/1", seen.data.causationid)
    assert.equal("peer/1", seen.data.correlationid)
  end)

  it("of emitted messages: an explicit correlationid is carried down the chain", function()
    assert.is_true(host:deliver("Start", {}, { correlationid = "conv-1" }))
    for _, m in ipairs(host.emitted) do
      assert.equal("conv-1", m.correlationid)
    end
    assert.equal(2, #host.emitted)
  end)
end)

describe("ctx", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)

  it("publish emits an event; send a command to its destination; reply answers the source", function()
    assert.is_true(host:send("Emit", { how = "all" }, { source = "client" }))
    assert.equal(3, #host.emitted)
    local ev, cmd, rep = host.emitted[1], host.emitted[2], host.emitted[3]
    assert.same({ "Emitted", "event", nil, { n = 1 } }, { ev.type, ev.kind, ev.to, ev.data })
    assert.same({ "DoThing", "command", "shipping", { n = 2 } }, { cmd.type, cmd.kind, cmd.to, cmd.data })
    assert.same({ "Answer", "reply", "client", { n = 3 } }, { rep.type, rep.kind, rep.to, rep.data })
    assert.same({ ev }, host.published)
    assert.same({ cmd }, host.sent)
    assert.same({ rep }, host.replies)
    for _, m in ipairs(host.emitted) do
      assert.equal("svc", m.source)
      assert.equal("client/1", m.causationid)
      assert.equal("client/1", m.correlationid)
    end
    assert.same({ "svc/1", "svc/2", "svc/3" }, { ev.id, cmd.id, rep.id })
  end)

  it("publish takes subject and correlationid options", function()
    local opts = { subject = "order-9", correlationid = "c-9" }
    assert.is_true(host:deliver("Emit", { how = "publish", opts = opts }))
    local m = host.published[1]
    assert.equal("order-9", m.subject)
    assert.equal("c-9", m.correlationid)
    assert.equal("test/1", m.causationid)
  end)

  it("send takes subject and correlationid options", function()
    local opts = { subject = "s", correlationid = "c" }
    assert.is_true(host:deliver("Emit", { how = "send", to = "billing", opts = opts }))
    local m = host.sent[1]
    assert.equal("billing", m.to)
    assert.equal("DoThing", m.type)
    assert.equal("s", m.subject)
    assert.equal("c", m.correlationid)
    assert.equal("test/1", m.causationid)
  end)

  it("emits no subject unless asked", function()
    assert.is_true(host:deliver("Emit", { how = "publish" }, { subject = "incoming" }))
    assert.is_nil(host.published[1].subject)
  end)

  it("send to ourselves delivers the command to our own handlers", function()
    assert.is_true(host:deliver("Emit", { how = "send", to = "svc" }))
    assert.equal("svc", host.sent[1].to)
    -- Nobody here handles DoThing, but a command to us for Ask would be handled:
    assert.is_true(host:send("Ask", { q = "why?" }, { source = "asker" }))
    local answer = host.replies[1]
    assert.equal("asker", answer.to)
    assert.equal("asker/1", answer.causationid)
    assert.same({ question = "why?", asked_by = "asker" }, answer.data)
  end)

  it("raises on bad arguments with a clear message", function()
    local expected = {
      ["empty type"] = "type must be a non-empty string",
      ["opts not a table"] = "table expected",
      ["subject not a string"] = "option 'subject' must be a string",
      ["send without destination"] = "string expected",
    }
    for case, text in pairs(expected) do
      assert.is_true(host:deliver("BadCall", { case = case }))
      local r = h.data_of(host.published, "BadCallResult")
      r = r[#r]
      assert.is_false(r.ok, case)
      assert.matches(text, r.err, 1, true)
    end
  end)
end)
