-- ctx.db and host.db: exec, rows, one; outcomes return nil, message; mistakes raise.
local testing = require "choreo.testing"
local h = require "spec.helpers"

local function last(host, type)
  local list = h.data_of(host.published, type)
  return list[#list]
end

describe("ctx.db", function()
  local host
  before_each(function() host = testing.host(nil, { name = "svc" }) end)

  it("exec returns the number of changed rows", function()
    assert.is_true(host:deliver("Put", { k = "a", v = 1 }))
    assert.same({ changed = 1, n = 1 }, last(host, "PutResult"))
    assert.is_true(host:deliver("Put", { k = "b", v = 2 }))
    assert.is_true(host:deliver("Bump", {}))
    assert.same({ changed = 2 }, last(host, "BumpResult"))
    assert.same({ k = "a", v = 2 }, host.db:one("select k, v from kv where k = 'a'"))
  end)

  it("exec returns nil, message on a UNIQUE violation, and the handler carries on", function()
    assert.is_true(host:deliver("Put", { k = "a", v = 1 }))
    assert.is_true(host:deliver("Put", { k = "a", v = 2 }))
    local r = last(host, "PutResult")
    assert.equal(2, r.n)
    assert.is_nil(r.changed)
    assert.matches("UNIQUE constraint failed", r.err, 1, true)
    assert.same({ k = "a", v = 1 }, host.db:one("select k, v from kv"))
    assert.equal(1, host.db:one("select count(*) as n from kv").n)
  end)

  it("exec returns nil, message on a NOT NULL violation", function()
    assert.is_true(host:deliver("Put", { v = 1 }))
    local r = last(host, "PutResult")
    assert.is_nil(r.changed)
    assert.is_string(r.err)
    assert.equal(0, host.db:one("select count(*) as n from kv").n)
  end)

  local mistakes = {
    ["syntax"] = "syntax error",
    ["no such table"] = "no such table",
    ["too many values"] = "statement has 1 parameter(s) but 2 value(s) were given",
    ["too few values"] = "statement has 2 parameter(s) but 1 value(s) were given",
    ["bind table"] = "cannot bind a table to SQL parameter 1",
    ["bind function"] = "cannot bind a function to SQL parameter 1",
    ["two statements"] = "one statement per call",
    ["rows syntax"] = "syntax error",
    ["commit"] = "may not begin, commit or roll it back",
    ["rollback"] = "may not begin, commit or roll it back",
    ["begin"] = "may not begin, commit or roll it back",
    ["choreo savepoint"] = "nor use savepoints named choreo_*",
  }
  for case, text in pairs(mistakes) do
    it("raises on a mistake: " .. case, function()
      assert.is_true(host:deliver("DbMistake", { case = case }))
      local r = last(host, "DbMistakeResult")
      assert.is_false(r.ok)
      assert.matches(text, r.err, 1, true)
      assert.equal(0, host.db:one("select count(*) as n from kv").n)
    end)
  end

  it("an uncaught SQL error fails the delivery and rolls back the handler's writes", function()
    local ok, err = host:deliver("DbMistakeUncaught", {})
    assert.is_false(ok)
    assert.matches("syntax error", err, 1, true)
    assert.is_nil(host.db:one("select * from kv where k = 'uncaught'"))
  end)

  it("rows iterates every row as a table keyed by column name; NULL columns are absent", function()
    for i, k in ipairs({ "c", "a", "b" }) do
      assert.is_true(host:deliver("Put", { k = k, v = i }))
    end
    host.db:exec("update kv set note = 'n' where k = 'a'")
    assert.is_true(host:deliver("Query", { how = "rows" }))
    assert.same({
      { k = "a", v = 2, note = "n" },
      { k = "b", v = 3 },
      { k = "c", v = 1 },
    }, last(host, "QueryResult").rows)
  end)

  it("rows binds parameters", function()
    for i, k in ipairs({ "a", "b", "c", "d" }) do
      assert.is_true(host:deliver("Put", { k = k, v = i }))
    end
    assert.is_true(host:deliver("Query", { how = "rows params", min = 3 }))
    assert.same({ "c", "d" }, last(host, "QueryResult").rows)
  end)

  it("rows over no rows iterates zero times", function()
    assert.is_true(host:deliver("Query", { how = "rows" }))
    assert.same({ rows = {} }, last(host, "QueryResult"))
  end)

  it("rows can be left early, and the statement is finished at once", function()
    for i, k in ipairs({ "a", "b", "c", "d", "e" }) do
      assert.is_true(host:deliver("Put", { k = k, v = i }))
    end
    assert.is_true(host:deliver("Query", { how = "rows break", stop = 2, delete = "e" }))
    local r = last(host, "QueryResult")
    assert.same({ { k = "a" }, { k = "b" } }, r.rows)
    assert.equal(1, r.after)
    assert.is_nil(host.db:one("select k from kv where k = 'e'"))
    assert.equal(4, host.db:one("select count(*) as n from kv").n)
  end)

  it("one returns the first row, or nil when there is none", function()
    assert.is_true(host:deliver("Put", { k = "a", v = 7 }))
    assert.is_true(host:deliver("Query", { how = "one", k = "a" }))
    assert.same({ row = { k = "a", v = 7 }, found = true, rows = {} }, last(host, "QueryResult"))
    assert.is_true(host:deliver("Query", { how = "one", k = "zzz" }))
    assert.same({ found = false, rows = {} }, last(host, "QueryResult"))
  end)

  it("keeps SQL integers integers and reals floats", function()
    assert.is_true(host:deliver("Query", { how = "types" }))
    local r = last(host, "QueryResult")
    assert.same({ i = 1, f = 1.5, s = "txt", two = 2.0 }, r.row)
    assert.same({ i = "integer", f = "float", two = "float" }, r.types)
  end)
end)

describe("host.db", function()
  it("reads and writes the same database as the handlers", function()
    local host = testing.host()
    assert.equal(1, host.db:exec("insert into kv(k, v) values (?, ?)", "x", 5))
    assert.is_true(host:deliver("Query", { how = "one", k = "x" }))
    assert.same({ k = "x", v = 5 }, h.data_of(host.published, "QueryResult")[1].row)
    local n = 0
    for row in host.db:rows("select k from kv") do
      n = n + 1
      assert.equal("x", row.k)
    end
    assert.equal(1, n)
    assert.is_nil(host.db:one("select k from kv where k = ?", "nope"))
    local ok, err = host.db:exec("insert into kv(k) values ('x')")
    assert.is_nil(ok)
    assert.matches("UNIQUE", err, 1, true)
    assert.has_error(function() host.db:exec("selec 1") end)
  end)
end)
