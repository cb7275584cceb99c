-- choreo.testing: test hosts for busted specs (`choreo test DIR`).
--
-- A test host is a real engine: the directory's scripts in their own Lua state, a fresh
-- in-memory database, and the same dispatch path a running host uses. Each deliver is one
-- transaction; what the handlers emit is collected in order.
local engine = require "choreo.engine"

local testing = {}

local Host = {}
Host.__index = Host

local function basename(path)
  return (path:gsub("/+$", ""):match("([^/]+)$")) or path
end

-- testing.host([dir[, opts]]): dir defaults to the directory `choreo test` was given;
-- opts.name sets the service name (default: the directory's base name); opts.instructions,
-- opts.memory and opts.max_message set the per-call instruction limit, the Lua memory ceiling
-- and the largest message in bytes; opts.workflow_cache and opts.workflow_history_max those of
-- `choreo run`; opts.manual_builds leaves projections' builds to
-- host:build() (by default each runs to its end before a call returns).
function testing.host(dir, opts)
  dir = dir or os.getenv("CHOREO_TEST_DIR")
  if not dir then error("testing.host: no directory given and not run by `choreo test`", 2) end
  opts = opts or {}
  local e, err = engine.open(dir, opts.name or basename(dir), opts)
  if not e then error(err, 2) end
  local host = setmetatable({
    engine = e,
    name = opts.name or basename(dir),
    emitted = {},   -- everything, in order
    published = {}, -- events
    sent = {},      -- commands
    replies = {},   -- replies
    seen = 0,
    manual_builds = opts.manual_builds,
  }, Host)
  host.db = e:db()
  host:build_()
  return host
end

-- Projections' builds run to their end, as a running host's catch up.
function Host:build_()
  if not self.manual_builds then self.engine:build() end
end

-- host:build(): runs the projections' builds to their end (with opts.manual_builds).
function Host:build()
  self.engine:build()
end

function Host:collect_()
  self:build_()
  for _, m in ipairs(self.engine:log(self.seen)) do
    self.seen = m.seq
    self.emitted[#self.emitted + 1] = m
    local list = m.kind == "event" and self.published or m.kind == "command" and self.sent
      or self.replies
    list[#list + 1] = m
  end
end

-- host:deliver(type, data[, opts]) -> true | false, error
-- opts: source (default "test"), kind ("event"|"command"|"reply"), to, subject, correlationid,
-- causationid, expect (the stream version a command's sender saw).
function Host:deliver(type, data, opts)
  local result = self.engine:deliver(type, data, opts)
  self:collect_()
  if result.failed > 0 then return false, result.error end
  return true
end

-- host:start(workflow, id[, input]) -> true | false, error: starts a workflow instance, as
-- `choreo start` does (a command to this host).
function Host:start(workflow, id, input)
  return self:deliver("choreo.StartWorkflow", { workflow = workflow, id = id, input = input },
    { kind = "command" })
end

-- host:signal(workflow, id, signal[, data]) / host:cancel(workflow, id[, reason]) -> true |
-- false, error: as `choreo signal` and `choreo workflows cancel` (a command to this host).
function Host:signal(workflow, id, signal, data)
  return self:deliver("choreo.SignalWorkflow", { workflow = workflow, id = id, signal = signal,
    data = data }, { kind = "command" })
end

function Host:cancel(workflow, id, reason)
  return self:deliver("choreo.CancelWorkflow", { workflow = workflow, id = id, reason = reason },
    { kind = "command" })
end

-- host:workflow(name, id) -> the instance ({ status =, input =, result =, error =, waiting =,
-- steps =, history = { { step =, op =, what =, result = }, ... } }), or nil
function Host:workflow(name, id)
  return self.engine:workflow(name, tostring(id))
end

-- host:reply(command, type[, data]) -> true | false, error: the reply of the service a command
-- went to (a message of host.sent), as that service's ctx:reply would send it.
function Host:reply(command, type, data)
  return self:deliver(type, data, { kind = "reply", source = command.to, to = self.name,
    correlationid = command.correlationid, causationid = command.id })
end

-- host:send(type, data[, opts]): deliver a command addressed to this host.
function Host:send(type, data, opts)
  opts = opts or {}
  opts.kind = "command"
  return self:deliver(type, data, opts)
end

-- host:given(stream, events) -> the stream's version: appends events ({ type =, data =
-- [, schema = "v<N>"] }, the current shape when schema is left out) to a stream, as its
-- aggregate would have; this host's handlers see them like any event.
function Host:given(stream, events)
  local version = self.engine:given(stream, events)
  self:collect_()
  return version
end

-- host:stream(stream) -> its events as msg tables, in order (as stored: not upcast)
function Host:stream(stream)
  return self.engine:stream(stream)
end

-- host:query(name, args) -> result | nil, error: runs a choreo.query as `choreo query` would.
function Host:query(name, args)
  return self.engine:query(name, args)
end

-- host:advance(seconds): move the clock; due retries and timeouts run.
function Host:advance(seconds)
  local result = self.engine:advance(seconds)
  self:collect_()
  if result.failed > 0 then return false, result.error end
  return true
end

-- host:dead_letters() -> { {id=, type=, error=, traceback=, attempts=, retrying=, revived=}, ... }
function Host:dead_letters()
  return self.engine:dead_letters()
end

-- host:dead_retry(id) -> true | nil, reason: as `choreo dead retry ID`; host:advance runs it.
function Host:dead_retry(id)
  return self.engine:dead_retry(id)
end

-- host:saga(name, key) -> the instance's state table, or nil (never started, or completed)
function Host:saga(name, key)
  return self.engine:saga(name, tostring(key))
end

-- host:timeouts() -> number of pending timeouts
function Host:timeouts()
  return self.engine:timeouts()
end

-- host:reload() -> true | nil, "file:line: message"; a projection whose version changed is
-- rebuilt before it returns (unless opts.manual_builds).
function Host:reload()
  local ok, err = self.engine:reload()
  if ok then self:build_() end
  return ok, err
end

-- host:rebuild(name) -> true | nil, reason: builds the projection from the first event of this
-- host's streams and swaps its tables in, as `choreo projections rebuild NAME` does.
function Host:rebuild(name)
  local ok, err = self.engine:rebuild(name)
  if ok then self:build_() end
  return ok, err
end

-- host:projections() -> { { name =, version = (declared), live = (of the live tables),
-- building =, applied =, error =, tables = { names } }, ... }
function Host:projections()
  return self.engine:projections()
end

function Host:close()
  self.engine:close()
end

return testing
