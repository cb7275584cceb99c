-- A reload that changes a workflow is checked against the running instances' histories
-- before it is accepted.
local testing = require "choreo.testing"

local V1 = [[
local choreo = require "choreo"
choreo.workflow("Order", function(wf, input)
  wf:call("warehouse", "ReserveStock", { order = input.order })
  wf:call("payments", "Charge", { order = input.order })
  return "done"
end)
]]

local function scripts(code)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local function write(text)
    local f = assert(io.open(dir .. "/order.lua", "w"))
    f:write(text)
    f:close()
  end
  write(code)
  return dir, write
end

local function last_sent(host) return host.sent[#host.sent] end

describe("workflow reloads", function()
  it("are refused when a running instance would take other steps, and the old code runs on", function()
    local dir, write = scripts(V1)
    local host = testing.host(dir, { name = "orders" })
    host:start("Order", 1, { order = 1 })
    write(V1:gsub('"ReserveStock"', '"HoldStock"'))
    local ok, err = host:reload()
    assert.is_nil(ok)
    assert.matches("workflow Order 1 would be stuck: step 1: the history records " ..
      "'call warehouse ReserveStock' but the code now does 'call warehouse HoldStock'", err, 1, true)
    host:reply(last_sent(host), "Reserved")
    assert.equal("Charge", last_sent(host).type)
    assert.equal("running", host:workflow("Order", 1).status)
  end)

  it("accept a change past where the instances are, which they then follow", function()
    local dir, write = scripts(V1)
    local host = testing.host(dir, { name = "orders" })
    host:start("Order", 1, { order = 1 })
    write(V1:gsub('"Charge"', '"Authorize"'))
    assert.is_true(host:reload())
    host:reply(last_sent(host), "Reserved")
    assert.equal("Authorize", last_sent(host).type)
  end)

  it("accept a change guarded by wf:patched: old instances keep the old path", function()
    local dir, write = scripts(V1)
    local host = testing.host(dir, { name = "orders" })
    host:start("Order", 1, { order = 1 })
    write([[
local choreo = require "choreo"
choreo.workflow("Order", function(wf, input)
  if wf:patched("hold-first") then
    wf:call("warehouse", "HoldStock", { order = input.order })
  else
    wf:call("warehouse", "ReserveStock", { order = input.order })
  end
  wf:call("payments", "Charge", { order = input.order })
  return "done"
end)
]])
    assert.is_true(host:reload())
    host:reply(last_sent(host), "Reserved")
    assert.equal("Charge", last_sent(host).type)
    host:reply(last_sent(host), "Charged")
    assert.equal("completed", host:workflow("Order", 1).status)
    host:start("Order", 2, { order = 2 })
    assert.equal("HoldStock", last_sent(host).type)
    local steps = host:workflow("Order", 2).history
    assert.equal("patched hold-first", steps[1].what)
    -- a replay of the new instance agrees with its history
    assert.is_true(host:reload())
    host:reply(last_sent(host), "Held")
    assert.equal("Charge", last_sent(host).type)
  end)

  it("accept code that drops a workflow, leaving its instances as they are", function()
    local dir, write = scripts(V1)
    local host = testing.host(dir, { name = "orders" })
    host:start("Order", 1, { order = 1 })
    write('local choreo = require "choreo"\nchoreo.on("Ping", function() end)\n')
    assert.is_true(host:reload())
    assert.equal("running", host:workflow("Order", 1).status)
  end)
end)
