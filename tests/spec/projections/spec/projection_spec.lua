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
    local taken = "projection balances: tables: balances is taken by a table of the host's database"
      .. " that is not this projection's"
    assert.truthy(err:find(taken, 1, true), err)
    deposit(host, "a", 1)
    assert.same({ a = 1 }, balances(host)) -- the first code still runs
  end)

  it("an event retried after the swap is not applied twice (its build applied it)", function()
    -- Version 1 has a bug with 13; version 2, built while 13 waits for its retry, has not.
    local buggy = ledger:gsub("Deposited = function%(msg, db%)",
      'Deposited = function(msg, db)\n      if msg.data.amount == 13 then error("unlucky") end')
    local dir = scripts({ ["ledger.lua"] = buggy })
    local host = testing.host(dir, { name = "ledger" })
    deposit(host, "a", 10)
    local ok, err = host:send("Deposit", { amount = 13 }, { subject = "Account/a" })
    assert.same({ false, "unlucky" }, { ok, err:match("unlucky") }) -- its Deposited failed here
    assert.equal(2, #host:stream("Account/a")) -- but the command appended it; a retry waits
    assert.same({ a = 10 }, balances(host))
    write(dir, "ledger.lua", ledger:gsub("version = 1", "version = 2"))
    assert.is_true(host:reload())
    assert.same({ a = 23 }, balances(host)) -- the build applied it
    assert.is_true(host:advance(60)) -- the retry: the projection's part is skipped
    assert.same({ a = 23 }, balances(host))
    deposit(host, "a", 1)
    assert.same({ a = 24 }, balances(host))
  end)

  it("a projection left out of the code and declared again is built afresh", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger" })
    deposit(host, "a", 10)
    write(dir, "ledger.lua", ledger:gsub('choreo%.projection%(.-\n}%)\n', ""):gsub('choreo%.query.*$', ""))
    assert.is_true(host:reload())
    deposit(host, "a", 5) -- nothing projects it meanwhile
    assert.same({ a = 10 }, balances(host))
    assert.same({ 0, 0 }, { projection(host, "balances").version, projection(host, "balances").live })
    write(dir, "ledger.lua", ledger)
    assert.is_true(host:reload())
    assert.same({ a = 15 }, balances(host))
  end)

  it("rejects patterns in `on`: a rebuild replays events by type", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger" })
    write(dir, "ledger.lua", ledger:gsub("Withdrawn = function%(msg, db%)", '["Withdr*"] = function(msg, db)'))
    local ok, err = host:reload()
    assert.is_nil(ok)
    assert.truthy(err:find("'on' names event types, not patterns ('Withdr*')", 1, true), err)
  end)

  -- Notes written as stream events, projected by `projection` (Lua declaring choreo.projection
  -- "notes" at version VERSION); two notes at version 1, then a reload to version 2, swapped.
  local function notes_swapped(projection_lua)
    local dir = scripts({ ["notes.lua"] = [[
      local choreo = require "choreo"
      choreo.aggregate("Note", {
        decide = { Write = function(_, cmd) return { { type = "Written", data = cmd.data } } end },
        evolve = { Written = function() end },
      })
    ]] .. projection_lua })
    local text = read(dir .. "/notes.lua")
    write(dir, "notes.lua", (text:gsub("VERSION", "1")))
    local host = testing.host(dir, { name = "notes" })
    assert.is_true(host:send("Write", { body = "hello world" }, { subject = "Note/1" }))
    assert.is_true(host:send("Write", { body = "goodbye" }, { subject = "Note/2" }))
    write(dir, "notes.lua", (text:gsub("VERSION", "2")))
    assert.is_true(host:reload())
    local p = projection(host, "notes")
    assert.same({ 2, 0, "" }, { p.live, p.building, p.error })
    return host
  end

  it("swaps in generated columns, full-text search tables and triggers", function()
    local host = notes_swapped([[
      choreo.projection("notes", {
        version = VERSION,
        tables = {
          "create table notes(id text primary key, body text, size integer generated always as (length(body)))",
          "create virtual table notes_text using fts5(id, body)",
          "create table counts(n integer)",
          "insert into counts values (0)",
          "create trigger notes_counted after insert on notes begin update counts set n = n + 1; end",
        },
        on = { Written = function(msg, db)
          db:exec("insert into notes(id, body) values (?, ?)", msg.subject, msg.data.body)
          db:exec("insert into notes_text values (?, ?)", msg.subject, msg.data.body)
        end },
      })
    ]])
    assert.same({ size = 11 }, host.db:one("select size from notes where id = 'Note/1'"))
    assert.same({ id = "Note/2" }, host.db:one("select id from notes_text where notes_text match 'goodbye'"))
    assert.same({ n = 2 }, host.db:one("select n from counts"))
    assert.is_true(host:send("Write", { body = "again" }, { subject = "Note/3" }))
    assert.same({ n = 3 }, host.db:one("select n from counts")) -- the trigger came along
  end)

  it("swaps in an external-content full-text table with the table it indexes", function()
    local host = notes_swapped([[
      choreo.projection("notes", {
        version = VERSION,
        tables = {
          "create table notes(n integer primary key, id text, body text)",
          "create virtual table notes_text using fts5(body, content='notes', content_rowid='n')",
        },
        on = { Written = function(msg, db)
          db:exec("insert into notes(id, body) values (?, ?)", msg.subject, msg.data.body)
          db:exec("insert into notes_text(rowid, body) select n, body from notes where id = ?", msg.subject)
        end },
      })
    ]])
    local function found(word)
      return host.db:one("select notes.id from notes_text join notes on notes.n = notes_text.rowid " ..
        "where notes_text match ?", word)
    end
    assert.same({ id = "Note/2" }, found("goodbye"))
    assert.same({ id = "Note/1" }, found("hello"))
    assert.is_true(host:send("Write", { body = "again" }, { subject = "Note/3" }))
    assert.same({ id = "Note/3" }, found("again"))
  end)

  it("refuses a contentless full-text table, which a rebuild could not copy", function()
    for _, sql in ipairs({ "create virtual table notes_text using fts5(body, content='')",
                           "CREATE VIRTUAL TABLE notes_text USING\n  FTS5(body, content = \"\")",
                           "create virtual table notes_text using  fts4(body, content='')" }) do
      local dir = scripts({ ["notes.lua"] = ([[
        local choreo = require "choreo"
        choreo.projection("notes", {
          version = 1,
          tables = { %q },
          on = { Written = function() end },
        })
      ]]):format(sql) })
      local ok, err = pcall(testing.host, dir, { name = "notes" })
      assert.is_false(ok, sql)
      assert.truthy(tostring(err):find("notes_text is a contentless full-text table", 1, true), err)
    end
  end)

  it("keeps the generation that matches the old tables through later reloads", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger", manual_builds = true })
    deposit(host, "a", 10)
    local v2 = ledger:gsub("version = 1", "version = 2"):gsub("return row and row.balance", "return 'v2'")
    write(dir, "ledger.lua", v2)
    assert.is_true(host:reload())
    write(dir, "ledger.lua", v2:gsub("'v2'", "'v2, again'"))
    assert.is_true(host:reload())
    deposit(host, "a", 1)
    assert.equal(11, host:query("balance", { account = "a" })) -- version 1's code, on its tables
    host:build()
    assert.equal("v2, again", host:query("balance", { account = "a" }))
  end)

  it("a build whose transaction SQLite ended under its handlers stops, and starts afresh", function()
    local code = [[
      local choreo = require "choreo"
      choreo.aggregate("Acc", {
        decide = { Add = function(_, c) return { { type = "Added", data = c.data } } end },
        evolve = { Added = function() end },
      })
      choreo.projection("counts", {
        version = VERSION,
        tables = { "create table counts(k text primary key, n integer not null)",
                   "create table once(k text primary key on conflict rollback)" },
        on = { Added = function(msg, db)
          db:exec("insert into counts values ('all', 1) on conflict(k) do update set n = n + 1")
          if TRICK and msg.data.i == 1500 then
            db:exec("insert into once values ('x')")
            db:exec("insert into once values ('x')") -- a conflict that rolls the transaction back
          end
        end },
      })
    ]]
    local dir = scripts({ ["c.lua"] = code:gsub("VERSION", "1"):gsub("TRICK", "false") })
    local host = testing.host(dir, { name = "c" })
    local events = {}
    for i = 1, 2500 do events[i] = { type = "Added", data = { i = i } } end
    host:given("Acc/1", events)
    write(dir, "c.lua", (code:gsub("VERSION", "2"):gsub("TRICK", "true")))
    assert.is_true(host:reload())
    local p = projection(host, "counts")
    assert.same({ 1, 2 }, { p.live, p.building })
    assert.matches("Acc/1 event 1500 %(Added%): the handler's SQL ended the build's transaction", p.error)
    assert.same({ n = 2500 }, host.db:one("select n from counts")) -- version 1's, whole
    write(dir, "c.lua", (code:gsub("VERSION", "2"):gsub("TRICK", "false")))
    assert.is_true(host:reload())
    assert.same({ 2, 0, "" }, { projection(host, "counts").live, projection(host, "counts").building,
                               projection(host, "counts").error })
    assert.same({ n = 2500 }, host.db:one("select n from counts"))
  end)

  it("keeps rowids across a swap, and a table may become a full-text one of the same name", function()
    local code = [[
      local choreo = require "choreo"
      choreo.aggregate("Note", {
        decide = { Write = function(_, cmd) return { { type = "Written", data = cmd.data } } end },
        evolve = { Written = function() end },
      })
      choreo.projection("notes", {
        version = VERSION,
        tables = { TABLE, "create table tags(tag text)" },
        on = { Written = function(msg, db)
          db:exec("insert into notes(rowid, body) values (?, ?)", msg.data.id, msg.data.body)
          db:exec("insert into tags(rowid, tag) values (?, ?)", msg.data.id, msg.data.body)
        end },
      })
    ]]
    local function version(v, tbl)
      return (code:gsub("VERSION", v):gsub("TABLE", function() return tbl end))
    end
    local dir = scripts({ ["notes.lua"] = version("1", '"create table notes(body text)"') })
    local host = testing.host(dir, { name = "notes" })
    assert.is_true(host:send("Write", { id = 200, body = "hello world" }, { subject = "Note/1" }))
    assert.is_true(host:send("Write", { id = 7, body = "goodbye" }, { subject = "Note/2" }))
    write(dir, "notes.lua", version("2", '"create virtual table notes using fts5(body)"'))
    assert.is_true(host:reload())
    local p = projection(host, "notes")
    assert.same({ 2, 0, "" }, { p.live, p.building, p.error })
    assert.same({ rowid = 200 }, host.db:one("select rowid from notes where notes match 'hello'"))
    assert.same({ rowid = 7 }, host.db:one("select rowid from tags where tag = 'goodbye'"))
    write(dir, "notes.lua", version("3", '"create virtual table notes using fts5(body)"'))
    assert.is_true(host:reload()) -- and from a full-text table to a full-text table
    assert.same({ 3, "" }, { projection(host, "notes").live, projection(host, "notes").error })
    assert.same({ rowid = 200 }, host.db:one("select rowid from notes where notes match 'hello'"))
  end)

  it("rebuilds include other hosts' events and this host's plain ones, kept as they came", function()
    local host = testing.host()
    deposit(host, "a", 10)
    assert.is_true(host:deliver("Deposited", { amount = 7 }, { source = "branch", subject = "Account/b" }))
    assert.is_true(host:deliver("Deposited", { amount = 2 }, { source = "branch", subject = "Account/a" }))
    assert.same({ a = 12, b = 7 }, balances(host))
    host.db:exec("delete from balances")
    assert.is_true(host:rebuild("balances"))
    assert.same({ a = 12, b = 7 }, balances(host))
    assert.equal(3, projection(host, "balances").applied) -- one stream event, two kept ones
    -- kept once each, whatever happens to them later
    assert.same({ n = 2 }, host.db:one("select count(*) as n from choreo_projection_inputs"))
  end)

  it("a new projection is built from what earlier projections kept", function()
    local dir = scripts({ ["ledger.lua"] = ledger })
    local host = testing.host(dir, { name = "ledger" })
    assert.is_true(host:deliver("Deposited", { amount = 7 }, { source = "branch", subject = "Account/b" }))
    write(dir, "ledger.lua", ledger .. [[
      choreo.projection("counts", {
        version = 1,
        tables = "create table counts(account text primary key, n integer not null)",
        on = { Deposited = function(msg, db)
          db:exec("insert into counts values (?, 1) on conflict(account) do update set n = n + 1",
            msg.subject)
        end },
      })
    ]])
    assert.is_true(host:reload())
    assert.same({ account = "Account/b", n = 1 }, host.db:one("select * from counts"))
  end)
end)

