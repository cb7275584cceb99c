-- Coroutine code whose outcome must not depend on whose coroutine.resume and coroutine.wrap run
-- it: Lua's own (in a spec) or choreo's (in a handler: bindings/scripts.c). Each case returns a
-- string; a path is cut to the file's name, as the two load this file from different places.
local cases = {}

local function show(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = tostring((select(i, ...))) end
  return (table.concat(out, " | "):gsub("[^%s:]*coroutine_cases%.lua", "coroutine_cases.lua"))
end

function cases.values()
  local co = coroutine.create(function(a, b)
    local c, d = coroutine.yield(a + b, "yielded")
    return c * 2, d, nil
  end)
  return table.concat({ show(coroutine.resume(co, 1, 2)), show(coroutine.resume(co, 10, "x")),
                        show(coroutine.resume(co)), coroutine.status(co) }, " / ")
end

function cases.error_in_resume()
  local co = coroutine.create(function() error("boom") end)
  return show(coroutine.resume(co)) .. " / " .. coroutine.status(co)
end

function cases.wrap_values()
  local gen = coroutine.wrap(function(n)
    for i = 1, n do coroutine.yield(i, i * i) end
    return "end"
  end)
  return table.concat({ show(gen(3)), show(gen()), show(gen()), show(gen()), show(pcall(gen)) },
                      " / ")
end

function cases.wrap_error_from_lua()
  local g = coroutine.wrap(function() error("boom") end)
  return show(pcall(function() g() end))
end

function cases.wrap_error_from_c()
  return show(pcall(coroutine.wrap(function() error("boom") end)))
end

function cases.wrap_error_object()
  local err = {}
  local ok, got = pcall(coroutine.wrap(function() error(err) end))
  return show(ok, got == err)
end

function cases.wrap_closes()
  local closed
  local g = coroutine.wrap(function()
    local _ <close> = setmetatable({}, { __close = function(_, e) closed = tostring(e) end })
    error("boom", 0)
  end)
  return show(pcall(g)) .. " / " .. show(closed)
end

function cases.wrap_close_error()
  local g = coroutine.wrap(function()
    local _ <close> = setmetatable({}, { __close = function() error("closing", 0) end })
    error("boom", 0)
  end)
  return show(pcall(function() g() end))
end

function cases.dead()
  local d = coroutine.wrap(function() end)
  d()
  local co = coroutine.create(function() end)
  coroutine.resume(co)
  return show(pcall(d)) .. " / " .. show(coroutine.resume(co))
end

function cases.not_suspended()
  local co
  co = coroutine.create(function() return coroutine.resume(co) end)
  return show(coroutine.resume(co)) .. " / " .. show(coroutine.resume(coroutine.running()))
end

function cases.bad_arguments()
  return table.concat({ show(pcall(coroutine.resume, 1)), show(pcall(coroutine.resume)),
                        show(pcall(coroutine.wrap, nil)) }, " / ")
end

function cases.running_inside()
  local outer = coroutine.running()
  local inside
  coroutine.wrap(function()
    local co, main = coroutine.running()
    inside = show(co ~= outer, main, coroutine.isyieldable(), coroutine.status(co))
  end)()
  return inside
end

function cases.many_values()
  local co = coroutine.create(function(...) return select("#", ...), coroutine.yield(...) end)
  local t = {}
  for i = 1, 250 do t[i] = i end
  local first = select("#", coroutine.resume(co, table.unpack(t)))
  return show(first, select("#", coroutine.resume(co, table.unpack(t))))
end

function cases.nested()
  local log = {}
  local inner = coroutine.wrap(function()
    for i = 1, 2 do
      log[#log + 1] = "inner " .. i
      coroutine.yield()
    end
  end)
  local outer = coroutine.wrap(function()
    inner()
    log[#log + 1] = "outer"
    coroutine.yield()
    inner()
    log[#log + 1] = "outer end"
  end)
  outer()
  outer()
  return table.concat(log, ", ")
end

-- Coroutines resuming coroutines, past Lua's limit on nested C calls: an error, not a crash.
function cases.deep()
  local function nest(n)
    if n == 0 then return 0 end
    return 1 + coroutine.wrap(nest)(n - 1)
  end
  local ok, err = pcall(nest, 1000)
  return show(ok, (tostring(err):gsub("^.*: ", ""))) .. " / " .. show(pcall(nest, 50))
end

return cases
