-- choreo.unpack reads every msgpack format, including those choreo's own packer never writes
-- (other writers on the bus may: float32, bin, ext, the 16- and 32-bit headers), in place. The
-- service's "Unpack" handler (values.lua) publishes what the bytes it gets hold.
local testing = require "choreo.testing"
local h = require "spec.helpers"

local function be(width, v) return string.pack(">I" .. width, v) end

local host
local choreo = {
  unpack = function(bytes)
    local ok, err = host:deliver("Unpack", { bytes = bytes })
    if not ok then error(err, 0) end
    local got = h.of_type(host.published, "Unpacked")
    return got[#got].data.value
  end,
}

describe("choreo.unpack", function()
  before_each(function() host = testing.host(nil, { name = "svc" }) end)

  it("reads integers of every width and sign", function()
    local cases = {
      { "\x00", 0 }, { "\x7f", 127 }, { "\xff", -1 }, { "\xe0", -32 },
      { "\xcc\xff", 255 }, { "\xcd" .. be(2, 65535), 65535 },
      { "\xce" .. be(4, 4294967295), 4294967295 },
      { "\xcf" .. be(8, math.maxinteger), math.maxinteger },
      { "\xd0\x80", -128 }, { "\xd0\x7f", 127 }, { "\xd1" .. be(2, 0x8000), -32768 },
      { "\xd2" .. be(4, 0x80000000), -2147483648 },
      { "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", math.mininteger },
    }
    for _, c in ipairs(cases) do
      local v = choreo.unpack(c[1])
      assert.equal(c[2], v)
      assert.equal("integer", math.type(v))
    end
    -- Beyond Lua's integers: a float, as close as it gets.
    local big = choreo.unpack("\xcf\xff\xff\xff\xff\xff\xff\xff\xff")
    assert.equal("float", math.type(big))
    assert.equal(2.0 ^ 64, big)
  end)

  it("reads floats of both widths", function()
    assert.equal(0.25, choreo.unpack("\xca" .. string.pack(">f", 0.25)))
    assert.equal(-1.5, choreo.unpack("\xcb" .. string.pack(">d", -1.5)))
    assert.equal("float", math.type(choreo.unpack("\xca" .. string.pack(">f", 2.0))))
  end)

  it("reads strings and binary of every header as Lua strings", function()
    local long = string.rep("y", 300)
    assert.equal("abc", choreo.unpack("\xa3abc"))
    assert.equal("abc", choreo.unpack("\xd9\x03abc"))
    assert.equal(long, choreo.unpack("\xda" .. be(2, 300) .. long))
    assert.equal("abc", choreo.unpack("\xdb" .. be(4, 3) .. "abc"))
    assert.equal("\0\1", choreo.unpack("\xc4\x02\0\1"))
    assert.equal("\0\1", choreo.unpack("\xc5" .. be(2, 2) .. "\0\1"))
    assert.equal("\0\1", choreo.unpack("\xc6" .. be(4, 2) .. "\0\1"))
  end)

  it("reads nil, booleans, and extension types as nil", function()
    assert.is_nil(choreo.unpack("\xc0"))
    assert.is_true(choreo.unpack("\xc3"))
    assert.is_false(choreo.unpack("\xc2"))
    -- [ext8, fixext1, fixext16, ext16, 7]: the value after each extension is still read.
    local v = choreo.unpack("\x95" .. "\xc7\x02\x05ab" .. "\xd4\x05a" .. "\xd8\x05" ..
                            string.rep("z", 16) .. "\xc8" .. be(2, 1) .. "\x05q" .. "\x07")
    assert.same({ [5] = 7 }, v)
  end)

  it("reads arrays and maps of every header", function()
    local sixteen = {}
    for i = 1, 16 do sixteen[i] = i end
    local body = ""
    for i = 1, 16 do body = body .. string.char(i) end
    assert.same(sixteen, choreo.unpack("\xdc" .. be(2, 16) .. body))
    assert.same({ 1, 2 }, choreo.unpack("\xdd" .. be(4, 2) .. "\x01\x02"))
    assert.same({ a = 1 }, choreo.unpack("\xde" .. be(2, 1) .. "\xa1a\x01"))
    assert.same({ a = 1, [2] = { b = true } },
                choreo.unpack("\xdf" .. be(4, 2) .. "\xa1a\x01" .. "\x02\x81\xa1b\xc3"))
    assert.same({}, choreo.unpack("\x80"))
    assert.same({}, choreo.unpack("\x90"))
  end)

  it("drops map entries whose key Lua cannot hold (nil, NaN), keeping the rest", function()
    local nan = "\xcb" .. string.pack(">d", 0 / 0)
    assert.same({ b = 2 }, choreo.unpack("\x83\xc0\x01" .. nan .. "\x05\xa1b\x02"))
  end)

  it("refuses what is not exactly one well-formed value", function()
    for _, bad in ipairs({ "", "\xa5ab", "\x92\x01", "\xc1", "\x01\x02", "\xdc\xff\xff" }) do
      local ok, err = pcall(choreo.unpack, bad)
      assert.is_false(ok)
      assert.matches("not one valid encoded value", err)
    end
  end)
end)
