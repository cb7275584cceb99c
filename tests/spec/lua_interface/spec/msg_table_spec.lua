-- The msg table handlers receive is filled as it is read (bindings/llazymsg.c); what a handler
-- can observe must not differ from a table built whole.
local testing = require "choreo.testing"
local h = require "spec.helpers"

-- The time our writers stamp, as the text it stands for (it travels as microseconds).
local STAMPED = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$"

describe("the msg table", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)

  it("gives every field of the message to pairs(), and nothing else", function()
    assert.is_true(host:deliver("ListFields", { n = 1 }, { source = "peer", subject = "s-1" }))
    local d = h.data_of(host.published, "Fields")[1]
    assert.same({ "correlationid", "data", "id", "kind", "seq", "source", "subject", "time", "type" },
      d.keys)
    assert.equal("table", d.metatable)
    assert.is_true(d.empty)
  end)

  it("comes with its data, and with each other field once it is read", function()
    assert.is_true(host:deliver("RawFirst", { n = 3, list = { "a" } }))
    assert.same({ data = { n = 3, list = { "a" } }, type_before = true, type_after = "RawFirst" },
      h.data_of(host.published, "RawSeen")[1])
  end)

  it("keeps what a handler assigns, clears, adds or rawsets, for the handlers after it too", function()
    assert.is_true(host:deliver("Assign", { n = 1 }, { subject = "s-1" }))
    assert.same({ type = "Changed", subject_cleared = true, mine = 42, same_data = true,
      source = "set raw" },
      h.data_of(host.published, "Assigned")[1])
    assert.same({ type = "Changed", subject_cleared = true, mine = 42 },
      h.data_of(host.published, "SecondSaw")[1])
  end)

  it("reads whole after its handler, its batch and its frame are gone", function()
    assert.is_true(host:deliver("Keep", { list = { 1, 2, 3 }, text = string.rep("x", 300) },
      { source = "peer", subject = "kept" }))
    for i = 1, 3 do assert.is_true(host:deliver("Other", { i = i })) end
    assert.is_true(host:deliver("ReadKept", {}))
    local kept = h.data_of(host.published, "Kept")[1]
    assert.matches(STAMPED, kept.time)
    kept.time = nil
    assert.same({ id = "peer/1", type = "Keep", seq = 1, source = "peer", subject = "kept",
      data = { list = { 1, 2, 3 }, text = string.rep("x", 300) } }, kept)
  end)

  it("goes whole into a publish or choreo.pack, fields not read yet included", function()
    assert.is_true(host:deliver("Forward", { n = 7 }, { source = "peer", subject = "fw" }))
    for _, t in ipairs({ "Forwarded", "Packed" }) do
      local d = h.data_of(host.published, t)[1]
      assert.equal("Forward", d.type)
      assert.equal("peer/1", d.id)
      assert.equal("peer/1", d.correlationid)
      assert.equal("fw", d.subject)
      assert.equal("event", d.kind)
      assert.matches(STAMPED, d.time)
      assert.same({ n = 7 }, d.data)
      local keys = 0
      for k in pairs(d) do
        keys = keys + 1
        assert.matches("^%l+$", k)
      end
      assert.equal(9, keys)
    end
  end)

  it("looks the same to handlers that read most fields, whichever way it is built", function()
    for i = 1, 5 do assert.is_true(host:deliver("ReadMany", { i = i }, { source = "p", subject = "s" })) end
    local seen = h.data_of(host.published, "ReadMost")
    assert.equal(5, #seen)
    for i, d in ipairs(seen) do
      assert.same({ type = "ReadMany", id = "p/" .. i, source = "p", kind = "event", seq = i,
        subject = "s", protected = true, metatable = "table", data = { i = i },
        keys = { "correlationid", "data", "id", "kind", "seq", "source", "subject", "time", "type" } }, d)
    end
  end)

  it("gives each message its own fields when those its handlers read are put in first", function()
    for i = 1, 300 do
      assert.is_true(host:deliver("ReadSome", { i = i }, { source = "p", subject = "s" .. i }))
    end
    local seen = h.data_of(host.published, "SomeRead")
    assert.equal(300, #seen)
    for i, d in ipairs(seen) do
      assert.same({ i = i, id = "p/" .. i, seq = i ~= 40 and i or nil,
        subject = i % 2 == 0 and "s" .. i or nil }, d)
    end
  end)

  it("gives each message its own names when those repeat and then change", function()
    local function source_of(i) return (i % 7 == 0 or i % 11 == 0) and "q" or "p" end
    for i = 1, 300 do
      assert.is_true(host:deliver("ReadNames", { i = i }, { source = source_of(i) }))
    end
    local seen = h.data_of(host.published, "NamesRead")
    assert.equal(300, #seen)
    for i, d in ipairs(seen) do
      assert.same({ i = i, source = source_of(i), type = "ReadNames", kind = "event" }, d)
    end
  end)

  it("answers misuse with errors, never a crash", function()
    assert.is_true(host:deliver("Misuse", { n = 1 }))
    assert.same({ iterate = false, index = false, newindex = false, pairs = false,
      type_after = "nil", id_after = true, packs = false,
      pack_error = "cannot send a value of type userdata" }, h.data_of(host.published, "Misused")[1])
  end)

  it("goes out whole while finalizers pack in the middle of its packing", function()
    local big = {}
    for j = 1, 100 do big[j] = { x = "y" .. j } end
    for i = 1, 4 do
      assert.is_true(host:deliver("PackUnderGc", { n = i, list = big }, { source = "peer", subject = "s" }))
    end
    local out = h.data_of(host.published, "PackedUnderGc")
    assert.equal(4, #out)
    for i, d in ipairs(out) do
      assert.same({ "a", "b", "PackUnderGc", "peer/" .. i, i, 100 },
        { d.before:sub(1, 1), d.after, d.m.type, d.m.id, d.m.data.n, #d.m.data.list })
      assert.same(big, d.m.data.list)
    end
  end)

  it("refuses a new metatable, which would lose the fields not read yet", function()
    assert.is_true(host:deliver("Remeta", {}))
    local d = h.data_of(host.published, "RemetaTried")[1]
    assert.is_false(d.ok)
    assert.matches("protected metatable", d.err)
    assert.equal("Remeta", d.type)
  end)
end)
