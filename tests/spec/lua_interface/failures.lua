-- Handlers for failures_spec.lua and limits_spec.lua: failing handlers, retries, os.exit and the
-- instruction and memory limits. Attempts are counted in a Lua upvalue, which the savepoint
-- rollback cannot touch; CountAttempts reports them.
local choreo = require "choreo"

choreo.db:exec("create table if not exists flaky_effects(key text, attempt integer)")

local attempts = {}

-- Writes to the db and publishes, then fails until attempt number data.succeed_on.
local function flaky(msg, ctx)
  local key = msg.data.key
  attempts[key] = (attempts[key] or 0) + 1
  ctx.db:exec("insert into flaky_effects(key, attempt) values (?, ?)", key, attempts[key])
  ctx:publish("FlakyEffect", { key = key, attempt = attempts[key] })
  if attempts[key] < msg.data.succeed_on then
    error("flaky failure " .. key .. " attempt " .. attempts[key])
  end
end
choreo.on("Flaky", flaky)

-- The same under retry policies of their own (retry_policy_spec.lua).
choreo.on("Patient", flaky, { attempts = 2, backoff = { 10 } })
choreo.on("Impatient", flaky, { attempts = 1, backoff = {} })
choreo.on("Policy.*", flaky, { backoff = { 0.5 } })
choreo.on("Policy.Exact", flaky, { attempts = 1, backoff = { 2 } })
choreo.saga("Stubborn", {
  starts = { "StubbornStart" },
  correlate = { StubbornStart = "key" },
  on = { StubbornStart = function(_, msg, sctx) flaky(msg, sctx) end },
  retry = { attempts = 2, backoff = {} },
})

choreo.on("CountAttempts", function(msg, ctx)
  ctx:publish("Attempts", { key = msg.data.key, n = attempts[msg.data.key] or 0 })
end)

choreo.on("Exit", function(_, ctx)
  ctx:publish("BeforeExit", {})
  os.exit(0)
end)

choreo.on("Spin", function(msg, ctx)
  attempts[msg.type] = (attempts[msg.type] or 0) + 1
  ctx:publish("SpinStarted", {})
  while true do end
end)

-- Swallows the limit error with pcall and carries on: the budget must still win.
choreo.on("SpinInPcall", function(msg, ctx)
  attempts[msg.type] = (attempts[msg.type] or 0) + 1
  local ok, err = pcall(function() while true do end end)
  ctx:publish("SpinSwallowed", { ok = ok, err = tostring(err) })
end)

-- Endless loops in coroutines, which never return to the handler's thread: the budget must
-- reach them there too. The second catches the coroutine's failure and spins on in the handler.
choreo.on("SpinInCoroutine", function(msg, ctx)
  attempts[msg.type] = (attempts[msg.type] or 0) + 1
  local ok, err = coroutine.resume(coroutine.create(function() while true do end end))
  ctx:publish("CoroutineReturned", { ok = ok, err = tostring(err) })
  if msg.data.then_spin then while true do end end
end)

choreo.on("SpinInWrap", function(msg, ctx)
  attempts[msg.type] = (attempts[msg.type] or 0) + 1
  coroutine.wrap(function() while true do end end)()
  ctx:publish("WrapReturned", {})
end)

-- A coroutine resumes one that runs past the watchdog's ticks (so the call is armed while the
-- inner one runs), then spins on itself once that one has come back: the first arm did not reach
-- it, a later one must. (Bounded: unmetered, the spec fails rather than hangs.)
choreo.on("SpinAfterInner", function(_, ctx)
  attempts.SpinAfterInner = (attempts.SpinAfterInner or 0) + 1
  local inner = coroutine.wrap(function()
    local start = os.clock()
    while os.clock() - start < 0.05 do end
  end)
  coroutine.wrap(function()
    inner()
    for _ = 1, 1e9 do end
    ctx:publish("InnerReturned", {})
  end)()
end)

-- Lua code that runs a while and ends: never cut off by a budget it stays within.
choreo.on("Count", function(msg, ctx)
  local n = 0
  for i = 1, msg.data.to do n = n + i % 3 end
  ctx:publish("Counted", { n = n })
end)

-- Keeps catching the limit error and going back into the loop, 10,000 times: far more than a
-- budget of 1e6 instructions allows. (Bounded, so that a budget pcall can swallow makes the
-- spec fail rather than hang.)
choreo.on("SpinInPcallLoop", function(msg, ctx)
  attempts[msg.type] = (attempts[msg.type] or 0) + 1
  local caught = 0
  for _ = 1, 10000 do
    if not pcall(function() while true do end end) then caught = caught + 1 end
  end
  ctx:publish("SpinEscaped", { caught = caught })
end)

choreo.on("Hog", function(msg, ctx)
  attempts[msg.type] = (attempts[msg.type] or 0) + 1
  ctx:publish("HogStarted", {})
  local t = {}
  for i = 1, math.maxinteger do t[i] = { i, tostring(i) } end
  ctx:publish("HogDone", { n = #t })
end)

-- One allocation far over any limit.
choreo.on("HugeString", function(_, ctx)
  ctx:publish("Huge", { n = #string.rep("x", 1 << 30) })
end)

-- Publishes (or sends, replies, sets a timeout with) data.bytes bytes of payload: over the
-- message limit each call raises, before anything is committed.
choreo.on("Big", function(msg, ctx)
  local payload = string.rep("x", msg.data.bytes)
  local how = msg.data.how
  if how == "send" then ctx:send("elsewhere", "BigOut", payload)
  elseif how == "reply" then ctx:reply("BigOut", payload)
  elseif how == "timeout" then ctx:timeout(1, "BigOut", payload)
  else ctx:publish("BigOut", payload) end
end)

-- A query that never ends on its own: the instruction budget covers SQL too.
choreo.on("EndlessQuery", function(_, ctx)
  ctx:publish("QueryStarted", {})
  ctx.db:one("with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c")
end)
