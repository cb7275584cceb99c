-- Handlers exercising the Lua interface; tests/spec/lua_interface/spec holds the specs.
local choreo = require "choreo"

choreo.db:exec("create table if not exists seen(type text, data text)")

choreo.on("Echo", function(msg, ctx)
  ctx:publish("Echoed", msg.data)
end)
