local testing = require "choreo.testing"

local here = os.getenv("CHOREO_TEST_DIR")

local made = {} -- directories to remove after each spec

-- A scripts directory of its own, so a spec can change the code and reload.
local function scripts(files)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  made[#made + 1] = dir
  for name, text in pairs(files) do
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
  end
  return dir
end

local function write(dir, name, text)
  local f = assert(io.open(dir .. "/" .. name, "w"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  return text
end

local ledger = read(here .. "/ledger.lua")

local function balances(host)
  local out = {}
  for row in host.db:rows("select account, balance from balances order by account") do
    out[row.account] = row.balance
  end
  return out
end

local function projection(host, name)
  for _, p in ipairs(host:projections()) do
    if p.name == name then return p end
  end
end

local function deposit(host, account, amount)
  assert.is_true(host:send("Deposit", { amount = amount }, { subject = "Account/" .. account }))
end

describe("projections", function()
  after_each(function()
    for _, dir in ipairs(made) do os.execute("rm -rf '" .. dir .. "'") end
    made = {}
  end)

  it("keep their tables live, in the transaction of each event", function()
    local host = testing.host()
    deposit(host, "a", 10)
    deposit(host, "b", 5)
    assert.is_true(host:send("Withdraw", { amount = 3 }, { subject = "Account/a" }))
    assert.same({ a = 7, b = 5 }, balances(host))
    assert.equal(7, host:query("balance", { account = "a" }))
    local p = projection(host, "balances")
    assert.same({ name = "balances", version = 1, live = 1, building = 0, applied = 0, error = "",
                  tables = { "balances" } }, p)
  end)

  it("a projection new to a host with streams is built from their first event", function()
    local without = ledger:gsub('choreo%.projection%(.-\n}%)\n', "")
    assert.is_nil(without:find("choreo.projection", 1, true))
    local dir = scripts({ ["ledger.lua"] = without:gsub('choreo%.query.*$', "") })
    local host = testing.host(dir, { name = "ledger" })
    deposit(host, "a", 10)
    deposit(host, "a", 1)
    deposit(host, "b", 5)
    write(dir, "ledger.lua", ledger)
    assert.is_true(host:reload())
    assert.same({ a = 11, b = 5 }, balances(host))
    local p = projection(host, "balances")
    assert.equal(3, p.applied)
    assert.equal(1, p.live)
    deposit(host, "b", 1)
    assert.same({ a = 11, b = 6 }, balances(host))
  end)

  it("a new version is built into new tables, which replace the old ones", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger" })
    deposit(host, "a", 10)
    assert.is_true(host:send("Withdraw", { amount = 4 }, { subject = "Account/a" }))
    -- Version 2 counts the movements too: a new column, filled from the first event.
    local v2 = ledger:gsub("version = 1", "version = 2")
      :gsub("balance integer not null%)", "balance integer not null, movements integer not null)")
      :gsub("values %(%?, %?%)", "values (?, ?, 1)")
      :gsub("balance = balance %+ excluded%.balance", "balance = balance + excluded.balance, movements = movements + 1")
      :gsub("set balance = balance %- %?", "set movements = movements + 1, balance = balance - ?")
    write(dir, "ledger.lua", v2)
    assert.is_true(host:reload())
    local row = host.db:one("select balance, movements from balances where account = 'a'")
    assert.same({ balance = 6, movements = 2 }, row)
    local p = projection(host, "balances")
    assert.equal(2, p.live)
    assert.equal(0, p.building)
    assert.equal(2, p.applied)
    -- and it goes on live
    deposit(host, "a", 1)
    assert.same({ balance = 7, movements = 3 }, host.db:one("select balance, movements from balances where account = 'a'"))
  end)

  it("until the new version replaces them, the old tables serve and keep up, with the old code", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger", manual_builds = true })
    deposit(host, "a", 10)
    -- Version 2 keeps cents, and its query says so.
    write(dir, "ledger.lua", ledger:gsub("version = 1", "version = 2")
      :gsub("values %(%?, %?%)", "values (?, ? * 100)")
      :gsub("set balance = balance %- %?", "set balance = balance - ? * 100")
      :gsub("return row and row.balance", "return row and { cents = row.balance }"))
    assert.is_true(host:reload())
    local p = projection(host, "balances")
    assert.same({ 2, 1, 2 }, { p.version, p.live, p.building })
    deposit(host, "a", 5) -- flows into the old tables, through version 1's handlers
    assert.is_true(host:send("Withdraw", { amount = 1 }, { subject = "Account/a" }))
    assert.same({ a = 14 }, balances(host))
    assert.equal(14, host:query("balance", { account = "a" })) -- version 1's query
    host:build()
    assert.same({ a = 1400 }, balances(host))
    assert.same({ cents = 1400 }, host:query("balance", { account = "a" }))
    deposit(host, "a", 1) -- version 2 alone from now on
    assert.same({ a = 1500 }, balances(host))
  end)

  it("rebuilds on demand and ends with the same tables", function()
    local host = testing.host()
    for i = 1, 30 do deposit(host, "acc" .. (i % 4), i) end
    local before = balances(host)
    host.db:exec("update balances set balance = -1") -- damage it
    assert.is_true(host:rebuild("balances"))
    assert.same(before, balances(host))
    assert.equal(30, projection(host, "balances").applied)
    local ok, err = host:rebuild("nope")
    assert.is_nil(ok)
    assert.equal("no projection named 'nope'", err)
  end)

  it("rebuilds see old events in their current shape (upcasters)", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger" })
    -- An old shape: Deposited v1 carried cents.
    host:given("Account/a", { { type = "Deposited", data = { cents = 1000 }, schema = "v1" } })
    write(dir, "ledger.lua", ledger:gsub("version = 1", "version = 2") ..
      '\nchoreo.upcast("Deposited", 1, function(d) return { amount = d.cents // 100 } end)\n')
    assert.is_true(host:reload())
    assert.same({ a = 10 }, balances(host))
  end)

  it("a handler failing in a build stops it; the live tables stay and serve", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger" })
    deposit(host, "a", 10)
    write(dir, "ledger.lua", ledger:gsub("version = 1", "version = 2")
      :gsub("Withdrawn = function%(msg, db%)", 'Withdrawn = function(msg, db) error("boom")'))
    host:send("Withdraw", { amount = 1 }, { subject = "Account/a" })
    assert.is_true(host:reload())
    local p = projection(host, "balances")
    assert.equal(1, p.live)
    assert.equal(2, p.building)
    assert.matches("Account/a event 2 %(Withdrawn%): .*boom", p.error)
    assert.same({ a = 9 }, balances(host)) -- version 1's, as it was
    -- Fixed code builds again.
    write(dir, "ledger.lua", ledger:gsub("version = 1", "version = 2"))
    assert.is_true(host:reload())
    p = projection(host, "balances")
    assert.same({ 2, 0, "" }, { p.live, p.building, p.error })
    assert.same({ a = 9 }, balances(host))
  end)

  it("rejects bad definitions with a clear error and keeps the old code", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger" })
    local cases = {
      { ledger:gsub("create table balances", "create tabel balances"),
        'projection balances: tables: near "tabel": syntax error' },
      { ledger:gsub("version = 1,", "version = 0,"), "'version' must be an integer, 1 or more" },
      { ledger:gsub("on = {", "on = { Deposited = 42 }, off = {"), "'on' must map event types to functions" },
      { ledger .. '\nchoreo.projection("balances", { version = 1, tables = "create table x(y)", on = { A = print } })',
        "'balances' is defined twice" },
      { ledger:gsub('tables = "create table balances%(', 'tables = "select 1 --('), "the SQL creates no table" },
    }
    for _, case in ipairs(cases) do
      write(dir, "ledger.lua", case[1])
      local ok, err = host:reload()
      assert.is_nil(ok)
      assert.truthy(err:find(case[2], 1, true), err)
    end
    -- A table of the same name that is not the projection's: the new projection is refused.
    local other = scripts({ ["ledger.lua"] = ledger:gsub('choreo%.projection%(.-\n}%)\n', "") })
    local h2 = testing.host(other, { name = "ledger" })
    h2.db:exec("create table balances(x)")
    write(other, "ledger.lua", ledger)
    local ok, err = h2:reload()
    assert.is_nil(ok)
    assert.truthy(err:find("projection balances: tables: table balances already exists", 1, true), err)
    deposit(host, "a", 1)
    assert.same({ a = 1 }, balances(host)) -- the first code still runs
  end)
end)
