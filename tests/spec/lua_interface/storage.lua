-- Handlers for db_spec.lua: ctx.db exec/rows/one, outcomes and mistakes.
local choreo = require "choreo"

choreo.db:exec("create table if not exists kv(k text primary key not null, v integer, note text)")

local function pack(...) return { n = select("#", ...), ... } end

choreo.on("Put", function(msg, ctx)
  local r = pack(ctx.db:exec("insert into kv(k, v) values (?, ?)", msg.data.k, msg.data.v))
  ctx:publish("PutResult", { changed = r[1], err = r[2], n = r.n })
end)

choreo.on("Bump", function(_, ctx)
  ctx:publish("BumpResult", { changed = ctx.db:exec("update kv set v = v + 1") })
end)

-- Runs one mistaken call under pcall and reports what it raised.
choreo.on("DbMistake", function(msg, ctx)
  local db, ok, err = ctx.db, nil, nil
  local case = msg.data.case
  if case == "syntax" then
    ok, err = pcall(db.exec, db, "insert into kv valuez (1)")
  elseif case == "no such table" then
    ok, err = pcall(db.one, db, "select * from nowhere")
  elseif case == "too many values" then
    ok, err = pcall(db.exec, db, "insert into kv(k) values (?)", "a", "b")
  elseif case == "too few values" then
    ok, err = pcall(db.exec, db, "insert into kv(k, v) values (?, ?)", "a")
  elseif case == "bind table" then
    ok, err = pcall(db.exec, db, "insert into kv(k) values (?)", {})
  elseif case == "bind function" then
    ok, err = pcall(db.exec, db, "insert into kv(k) values (?)", print)
  elseif case == "two statements" then
    ok, err = pcall(db.exec, db, "insert into kv(k) values ('x'); insert into kv(k) values ('y')")
  elseif case == "rows syntax" then
    ok, err = pcall(db.rows, db, "selec * from kv")
  elseif case == "commit" or case == "rollback" or case == "begin" then
    db:exec("insert into kv(k, v) values ('kept', 1)")
    ok, err = pcall(db.exec, db, case)
    db:exec("delete from kv where k = 'kept'")
  elseif case == "choreo savepoint" then
    ok, err = pcall(db.exec, db, "release choreo_msg")
  end
  ctx:publish("DbMistakeResult", { ok = ok, err = tostring(err) })
end)

-- The same mistake without pcall: the delivery fails.
choreo.on("DbMistakeUncaught", function(_, ctx)
  ctx.db:exec("insert into kv(k, v) values ('uncaught', 1)")
  ctx.db:exec("selec 1")
end)

choreo.on("Query", function(msg, ctx)
  local d = msg.data
  local out = { rows = {} }
  if d.how == "rows" then
    for row in ctx.db:rows("select k, v, note from kv order by k") do
      out.rows[#out.rows + 1] = row
    end
  elseif d.how == "rows break" then
    for row in ctx.db:rows("select k from kv order by k") do
      out.rows[#out.rows + 1] = row
      if #out.rows == d.stop then break end
    end
    -- The statement was finished when the loop ended: the table can be changed at once.
    out.after = ctx.db:exec("delete from kv where k = ?", d.delete)
  elseif d.how == "rows params" then
    for row in ctx.db:rows("select k from kv where v >= ? order by k", d.min) do
      out.rows[#out.rows + 1] = row.k
    end
  elseif d.how == "one" then
    out.row = ctx.db:one("select k, v from kv where k = ?", d.k)
    out.found = out.row ~= nil
  elseif d.how == "types" then
    out.row = ctx.db:one("select 1 as i, 1.5 as f, 'txt' as s, null as nul, 2.0 as two")
    out.types = { i = math.type(out.row.i), f = math.type(out.row.f), two = math.type(out.row.two) }
  end
  ctx:publish("QueryResult", out)
end)
