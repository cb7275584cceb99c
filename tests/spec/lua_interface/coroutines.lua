-- Handlers for coroutines_spec.lua: the cases of spec/coroutine_cases.lua run in a handler, where
-- coroutine.resume and coroutine.wrap are choreo's (metered), to be compared with Lua's own.
local choreo = require "choreo"
local cases = require "spec.coroutine_cases"

choreo.on("CoroutineCases", function(_, ctx)
  local results = {}
  for name, case in pairs(cases) do results[name] = case() end
  ctx:publish("CoroutineResults", results)
end)
