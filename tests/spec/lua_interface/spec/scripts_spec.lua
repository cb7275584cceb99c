-- Script directories: load errors with file:line, and host:reload().
local testing = require "choreo.testing"
local h = require "spec.helpers"

local function version_script(v)
  return ([[
local choreo = require "choreo"
choreo.on("Version", function(_, ctx)
  ctx:publish("VersionIs", { v = %d })
end)
]]):format(v)
end

local function version(host)
  assert.is_true(host:deliver("Version", {}))
  local list = h.data_of(host.published, "VersionIs")
  return list[#list].v
end

describe("a script directory", function()
  local dir
  before_each(function() dir = h.tempdir() end)
  after_each(function() dir.remove() end)

  it("with a syntax error makes testing.host raise with file:line", function()
    dir.write("a_good.lua", version_script(1))
    dir.write("b_bad.lua", "local x = 1\nlocal y = = 2\n")
    local ok, err = pcall(testing.host, dir.path)
    assert.is_false(ok)
    assert.matches(dir.path .. "/b_bad.lua:2:", err, 1, true)
  end)

  it("with a script raising at load time makes testing.host raise with file:line", function()
    dir.write("boom.lua", "local choreo = require 'choreo'\n\nerror('cannot start')\n")
    local ok, err = pcall(testing.host, dir.path)
    assert.is_false(ok)
    assert.matches("boom.lua:3: cannot start", err, 1, true)
  end)

  it("that does not exist makes testing.host raise", function()
    local ok, err = pcall(testing.host, dir.path .. "/missing")
    assert.is_false(ok)
    assert.matches("no such directory", err, 1, true)
  end)

  it("gives the host the directory's base name unless opts.name says otherwise", function()
    dir.write("v.lua", version_script(1))
    local host = testing.host(dir.path)
    assert.equal(1, version(host))
    assert.equal(dir.path:match("[^/]+$") .. "/1", host.published[1].id)
    local named = testing.host(dir.path, { name = "other" })
    assert.equal(1, version(named))
    assert.equal("other/1", named.published[1].id)
  end)

  it("is loaded again by host:reload(), which picks up edits and new files", function()
    dir.write("v.lua", version_script(1))
    local host = testing.host(dir.path)
    assert.equal(1, version(host))
    dir.write("v.lua", version_script(2))
    assert.is_true(host:reload())
    assert.equal(2, version(host))
    dir.write("w.lua", 'require("choreo").on("Extra", function(_, ctx) ctx:publish("ExtraDone", {}) end)\n')
    assert.is_true(host:reload())
    assert.is_true(host:deliver("Extra", {}))
    assert.equal(1, #h.of_type(host.published, "ExtraDone"))
    assert.equal(2, version(host))
  end)

  it("keeps the old code when a reload finds a syntax error, and says where", function()
    dir.write("v.lua", version_script(1))
    local host = testing.host(dir.path)
    assert.equal(1, version(host))
    dir.write("v.lua", "local choreo = require 'choreo'\nchoreo.on('Version', function(\n")
    local ok, err = host:reload()
    assert.is_nil(ok)
    assert.matches(dir.path .. "/v.lua:%d+: ", err)
    assert.equal(1, version(host))
    -- A good edit afterwards is picked up.
    dir.write("v.lua", version_script(3))
    assert.is_true(host:reload())
    assert.equal(3, version(host))
  end)

  it("keeps the old code when a reload hits an error raised at load time", function()
    dir.write("v.lua", version_script(1))
    local host = testing.host(dir.path)
    dir.write("z.lua", "\nerror('not today')\n")
    local ok, err = host:reload()
    assert.is_nil(ok)
    assert.matches("z.lua:2: not today", err, 1, true)
    assert.equal(1, version(host))
  end)

  it("keeps the old code when a reload runs past the instruction budget", function()
    dir.write("v.lua", version_script(1))
    local host = testing.host(dir.path, { instructions = 1e6 })
    dir.write("z.lua", "while true do end\n")
    local ok, err = host:reload()
    assert.is_nil(ok)
    assert.matches("z.lua", err, 1, true)
    assert.matches("instruction limit", err, 1, true)
    assert.equal(1, version(host))
  end)

  it("keeps database state across a reload; a pending retry runs with the new code #retries", function()
    dir.write("v.lua", [[
local choreo = require "choreo"
choreo.db:exec("create table if not exists t(x integer)")
choreo.on("Work", function(_, ctx)
  ctx.db:exec("insert into t values (1)")
  error("not yet")
end)
]])
    local host = testing.host(dir.path)
    local ok, err = host:deliver("Work", {})
    assert.is_false(ok)
    assert.matches("v.lua:5: not yet", err, 1, true)
    dir.write("v.lua", [[
local choreo = require "choreo"
choreo.db:exec("create table if not exists t(x integer)")
choreo.on("Work", function(_, ctx)
  ctx.db:exec("insert into t values (2)")
  ctx:publish("Worked", {})
end)
]])
    assert.is_true(host:reload())
    assert.equal(1, host.db:one("select count(*) as n from choreo_retries").n)
    assert.is_true(host:advance(1))
    assert.same({ { x = 2 } }, (function()
      local rows = {}
      for row in host.db:rows("select x from t") do rows[#rows + 1] = row end
      return rows
    end)())
    assert.equal(1, #h.of_type(host.published, "Worked"))
    assert.same({}, host:dead_letters())
  end)
end)
