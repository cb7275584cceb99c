-- Handlers for ctx_spec.lua: ctx used outside a handler. A handler keeps ctx in an object whose
-- finalizer calls it; the finalizer runs when the state is closed (host:reload() swaps it out),
-- which is outside any handler. It records what happened in the database.
local choreo = require "choreo"

choreo.db:exec("create table if not exists outside_calls(what text, result text)")

local keep = {}

local function try(ctx, what, f, ...)
  local ok, err = pcall(f, ctx, ...)
  ctx.db:exec("insert into outside_calls values (?, ?)", what, ok and "no error" or tostring(err))
end

choreo.on("KeepCtx", function(_, ctx)
  keep[#keep + 1] = setmetatable({}, { __gc = function()
    try(ctx, "publish", ctx.publish, "Late", {})
    try(ctx, "send", ctx.send, "other", "Late", {})
    try(ctx, "reply", ctx.reply, "Late", {})
  end })
end)

-- Within a handler, a coroutine it runs is still inside the handler.
choreo.on("CoroutineCtx", function(_, ctx)
  local co = coroutine.wrap(function()
    coroutine.yield()
    ctx:publish("FromCoroutine", {})
  end)
  co()
  co()
end)

-- One ctx for the state's life: requiring choreo again (after dropping it from package.loaded)
-- gives a new choreo table, and handlers still receive the ctx they did before.
local first_ctx
choreo.on("RequireAgain", function(_, ctx)
  first_ctx = ctx
  package.loaded.choreo = nil
  local again = require "choreo"
  again.on("AfterRequireAgain", function(_, later)
    later:publish("SameCtx", { same = rawequal(later, first_ctx), fresh_table = again ~= choreo })
  end)
end)
