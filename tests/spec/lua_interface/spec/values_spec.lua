-- Values crossing the wire: what round-trips through ctx:publish, and what is refused.
local testing = require "choreo.testing"
local h = require "spec.helpers"

local function roundtrip(host, value)
  assert.is_true(host:deliver("Roundtrip", value))
  local back = h.of_type(host.published, "Back")
  local types = h.data_of(host.published, "Types")
  return back[#back].data, types[#types].types
end

describe("values crossing the wire", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)

  it("round-trip scalars at the top level, keeping integers integers", function()
    for _, v in ipairs({ true, false, 0, 42, -7, math.maxinteger, math.mininteger, 1.5, -0.25,
                         2.0, 1e300, "", "text", "with\0zero\255bytes" }) do
      local back, t = roundtrip(host, v)
      assert.equal(v, back)
      assert.equal(math.type(v) or type(v), math.type(back) or type(back))
      assert.equal(math.type(v) or type(v), t)
    end
  end)

  it("round-trip nil", function()
    assert.is_true(host:deliver("Roundtrip", nil))
    local back = h.of_type(host.published, "Back")[1]
    assert.is_nil(back.data)
    assert.equal("nil", h.data_of(host.published, "Types")[1].types)
    assert.is_true(host:deliver("PublishNothing", {}))
    assert.is_nil(h.of_type(host.published, "NothingEither")[1].data)
    assert.equal("s", h.of_type(host.published, "NothingEither")[1].subject)
  end)

  for _, how in ipairs({ "publish", "send", "reply" }) do
    it("send nil when ctx:" .. how .. " is called without data", function()
      local ok, err = host:send("EmitNoData", { how = how }, { source = "client" })
      assert.is_nil(err)
      assert.is_true(ok)
      local m = h.of_type(host.emitted, "Nothing")[1]
      assert.is_table(m)
      assert.is_nil(m.data)
    end)
  end

  it("round-trip nested arrays and maps", function()
    local value = {
      t = true, f = false, i = 1, neg = -3, big = math.maxinteger, fl = 0.5, whole = 3.0,
      s = "str",
      arr = { 1, 2, { 3, { 4, "five" } }, { a = 1 } },
      map = { a = { b = { c = { "deep" } } } },
      sparse = { [1] = "a", [3] = "c" },
      numkeys = { [10] = "ten", [-1] = "minus one" },
      mixed = { 1, 2, x = "y" },
    }
    local back, t = roundtrip(host, value)
    assert.same(value, back)
    assert.equal("integer", math.type(back.big))
    assert.equal("integer", math.type(back.arr[3][2][1]))
    assert.equal("float", math.type(back.whole))
    assert.equal("float", t.whole)
    assert.equal("integer", t.i)
    assert.equal("float", t.fl)
    assert.equal("integer", t.arr[1])
    assert.equal("integer", math.type(next(back.numkeys)))
  end)

  it("send an empty table as an empty table", function()
    local back = roundtrip(host, { empty = {}, list = { {} } })
    assert.same({ empty = {}, list = { {} } }, back)
  end)

  it("allow tables nested 30 deep", function()
    assert.is_true(host:deliver("PublishDeep", { depth = 30 }))
    local v, depth = h.of_type(host.published, "Deep")[1].data, 1
    while v[1] do
      v, depth = v[1], depth + 1
    end
    assert.equal(30, depth)
    assert.is_true(v.leaf)
  end)

  -- A map is packed in one walk and its header put in front afterwards: the shortest header
  -- for its size, at every size where that changes, with the maps inside it intact.
  it("pack maps with the shortest header at every size, maps inside intact", function()
    for _, n in ipairs({ 1, 15, 16, 65535, 65536 }) do
      assert.is_true(host:deliver("PackMap", { n = n }))
      local got = h.data_of(host.published, "PackedMap")
      local r = got[#got]
      assert.is_true(r.same, "map of " .. n)
      assert.equal(n < 16 and 0x80 + n or n < 65536 and 0xde or 0xdf, r.first)
      assert.equal("\x81\xa1a\x81\xa1b\x01", r.small)
    end
  end)

  local refused = {
    ["function"] = "cannot send a value of type function",
    ["function at top"] = "cannot send a value of type function",
    coroutine = "cannot send a value of type thread",
    userdata = "cannot send a value of type userdata",
    cycle = "cannot send a table nested deeper than 30 levels (or a cycle)",
    ["deep 40"] = "cannot send a table nested deeper than 30 levels",
    ["deep 31"] = "cannot send a table nested deeper than 30 levels",
    ["boolean key"] = "cannot send a table key of type boolean",
    ["table key"] = "cannot send a table key of type table",
  }
  for what, text in pairs(refused) do
    it("refuse a " .. what .. " with a clear error from ctx:publish", function()
      local ok, err = host:deliver("PublishBad", { what = what })
      assert.is_false(ok)
      assert.matches("ctx:publish: " .. text, err, 1, true)
      -- The whole handler failed: what it published before is gone too.
      assert.same({}, host.published)
      assert.is_true(host:deliver("PublishBadCaught", { what = what }))
      local r = h.data_of(host.published, "BadResult")[1]
      assert.is_false(r.ok)
      assert.matches("ctx:publish: " .. text, r.err, 1, true)
      assert.same({}, h.of_type(host.published, "Bad"))
    end)
  end

  it("refuse such values in ctx:send too", function()
    local ok, err = host:deliver("SendBad", {})
    assert.is_false(ok)
    assert.matches("ctx:send: cannot send a value of type function", err, 1, true)
    assert.same({}, host.sent)
  end)

  it("are checked by host:deliver as well", function()
    assert.has_error(function() host:deliver("Roundtrip", { f = print }) end,
      "deliver: cannot send a value of type function")
  end)
end)
