-- Shared by the specs of tests/spec/lua_interface (not a spec itself: busted runs *_spec.lua).
local helpers = {}

-- The messages of `list` whose type is `type`, in order.
function helpers.of_type(list, type)
  local out = {}
  for _, m in ipairs(list) do
    if m.type == type then out[#out + 1] = m end
  end
  return out
end

-- The data of each message of `list` whose type is `type`, in order.
function helpers.data_of(list, type)
  local out = {}
  for _, m in ipairs(helpers.of_type(list, type)) do out[#out + 1] = m.data end
  return out
end

-- A fresh, empty directory under /tmp and a function that removes it with the files written
-- through `write`.
function helpers.tempdir()
  local path = os.tmpname() -- creates the file: replace it by a directory of the same name
  assert(os.remove(path))
  assert(os.execute("mkdir '" .. path .. "'"))
  local dir = { path = path, files = {} }
  function dir.write(name, text)
    local f = assert(io.open(path .. "/" .. name, "w"))
    assert(f:write(text))
    assert(f:close())
    dir.files[name] = true
  end
  function dir.remove()
    for name in pairs(dir.files) do os.remove(path .. "/" .. name) end
    assert(os.remove(path))
  end
  return dir
end

-- How many times the handler of `key` has been attempted so far (failures.lua counts them in a
-- Lua upvalue, which no rollback undoes).
function helpers.attempts(host, key)
  local ok, err = host:deliver("CountAttempts", { key = key })
  if not ok then error("CountAttempts failed: " .. tostring(err), 2) end
  local list = helpers.data_of(host.published, "Attempts")
  return list[#list].n
end

return helpers
