-- choreo.workflow and ctx:start: durable workflows, orchestration written as plain sequential
-- Lua on top of choreo.on, ctx and the tables the engine keeps (choreo.workflowstore, over
-- choreo_workflows, choreo_workflow_history and choreo_workflow_inbox).
--
-- An instance runs as a coroutine. Every step it takes (a command sent, a reply or event
-- waited for, a timer, a clock reading, a random number, a side effect) is recorded in its
-- history in the transaction of the message that caused it, with its outcome once known; the
-- coroutine yields while it waits. The message that brings the outcome (a reply whose
-- causation is the command, an event of its conversation, a timer) resumes it.
--
-- Between messages the suspended coroutine is kept in memory (an LRU of --workflow-cache
-- instances, holding nothing of their histories),
-- so a step costs the same whatever the history's length. After a restart, a reload, an
-- eviction, or a transaction that rolled back (the instance's stored revision then differs from
-- the cached one), the workflow function runs again from the start against the history: each
-- recorded step returns what it recorded, nothing is sent twice, and the code must take the
-- same steps in the same order. One that does not marks the instance "stuck", with the step;
-- the next reload (choreo.ResumeWorkflows) replays it under the new code.
--
-- Every message a workflow emits carries its own correlation id, "workflow:HOST:NAME:ID", which
-- replies and the events of its conversation inherit; that is how they find it again. Its
-- timers carry it as their subject.

local store = require "choreo.workflowstore"

local PREFIX = "workflow:"
local TIMER = "choreo.WorkflowTimer"
local START = "choreo.StartWorkflow"
local CANCEL = "choreo.CancelWorkflow"
local SIGNAL = "choreo.SignalWorkflow"
local RESUME = "choreo.ResumeWorkflows" -- what the host asks itself after a reload
local CONTINUE_MAX = 100 -- continue_as_new within one message: more is a loop

local WAIT = setmetatable({}, { __tostring = function() return "a workflow wait" end })
-- A replay checking new code has gone through the history: what follows would act.
local CHECKED = setmetatable({}, { __tostring = function() return "a workflow checked" end })
local Fail = { __tostring = function(f) return f.reason end }
local Continue = { __tostring = function() return "continue_as_new" end }
local Cancel = { __tostring = function(c) return c.reason end }

return function(choreo, ctx)
  local CACHE_MAX, HISTORY_MAX = store.limits() -- --workflow-cache, --workflow-history-max
  local defined = {}   -- name -> workflow function
  local cache = {}     -- correlation -> { wf =, rev =, used = }
  local cached, tick = 0, 0
  local module = { any = false }

  -- The host is part of it: another host's instance of a workflow of the same name and id is
  -- another conversation.
  local own_prefix = PREFIX .. choreo.name .. ":"
  local function correlation_of(name, id) return own_prefix .. name .. ":" .. id end

  local function parse(key)
    if type(key) ~= "string" or key:sub(1, #own_prefix) ~= own_prefix then return nil end
    return key:match("^([^:]+):(.+)$", #own_prefix + 1)
  end

  local function forget(key)
    if cache[key] then cache[key] = nil; cached = cached - 1 end
  end

  -- Keeps the instance's suspended coroutine; past CACHE_MAX, those not used in the last half
  -- of the accesses go (their next message replays them).
  local function keep(wf)
    tick = tick + 1
    if not cache[wf.correlation] then cached = cached + 1 end
    cache[wf.correlation] = { wf = wf, rev = wf.rev, used = tick }
    if cached > CACHE_MAX then
      for key, c in pairs(cache) do
        if c.used < tick - CACHE_MAX // 2 then cache[key] = nil; cached = cached - 1 end
      end
    end
  end

  ---------------------------------------------------------------------------------------------
  -- wf: what a workflow function is given

  local Wf = {}
  Wf.__index = Wf

  local function new_wf(name, id, row)
    return setmetatable({
      name = name, id = id, correlation = correlation_of(name, id),
      history = {},           -- step -> { op =, what =, ref =, outcome = (nil while waiting) },
                              -- the recorded steps a replay has still to go through
      -- Steps are numbered on across continue_as_new, so that a timer of an earlier run can
      -- never be taken for one of this run's: base is the last step of the runs before.
      base = 0,
      n = 0,                  -- the last step the code has taken
      steps = row and row.steps or 0, -- the last step recorded
      rev = row and row.rev or 0,
      started_ms = row and row.started_ms or math.floor(store.now() * 1000),
      compensations = {},
      handlers = {},          -- signal name -> fn(data)
      signals = {},           -- step -> { { signal =, data = }, ... } a replay applies in it
    }, Wf)
  end

  function Wf:check_(what)
    if coroutine.running() ~= self.co then
      error("wf:" .. what .. " is only valid inside its workflow's function (not in a handler, " ..
        "a coroutine of its own or after the workflow ended)", 3)
    end
  end

  -- The next step: its number, and what the history recorded for it (nil when it is new).
  function Wf:step_(op, what)
    if self.stuck then error(self.stuck, 0) end
    local n = self.n + 1
    self.n = n
    local h = self.history[n]
    self.history[n] = nil -- gone through: a kept coroutine holds no history
    if h then
      if h.op ~= op or h.what ~= what then
        self.stuck = ("step %d: the history records '%s' but the code now does '%s'"):format(n, h.what, what)
        error(self.stuck, 0)
      end
      return n, h
    end
    if self.checking then coroutine.yield(CHECKED) end
    if n - self.base > HISTORY_MAX then
      self.over = ("the history reached %d steps, the limit: a workflow that runs on and on " ..
        "must start afresh with wf:continue_as_new(input)"):format(HISTORY_MAX)
      error(self.over, 0)
    end
    return n, nil
  end

  function Wf:record_(n, op, what, ref, outcome)
    store.record(self.name, self.id, n, op, what, ref, outcome ~= nil and choreo.pack(outcome) or nil)
    self.steps = n
  end

  -- A cancellation raises where the workflow waits, so that its compensations run.
  local function taken(outcome)
    if outcome.cancel then error(setmetatable({ reason = outcome.cancel }, Cancel), 0) end
    return outcome
  end

  -- Suspends the coroutine in step n until its outcome comes (dispatch resumes it with that).
  -- predicate: an await's, which a signal may make true.
  -- timer: whether one may be pending for the step (unknown, so true, for a step replayed).
  function Wf:block_(n, op, ref, what, predicate, timer)
    if self.checking then coroutine.yield(CHECKED) end
    self.waiting = { step = n, op = op, ref = ref, what = what, predicate = predicate, timer = timer }
    local outcome = coroutine.yield(WAIT)
    self.waiting = nil
    return taken(outcome)
  end

  -- Runs the handlers of the signals a replay finds taken while the instance waited in step n.
  function Wf:replay_signals_(n)
    for _, s in ipairs(self.signals[n] or {}) do
      local fn = self.handlers[s.signal]
      if fn then fn(s.data) end
    end
    self.signals[n] = nil
  end

  -- The outcome of a waiting step: recorded already, or waited for now.
  function Wf:outcome_(n, h, predicate)
    self:replay_signals_(n)
    if h.outcome ~= nil then return taken(h.outcome) end
    return self:block_(n, h.op, h.ref, h.what, predicate, true)
  end

  function Wf:timer_(n, seconds)
    self.ctx:timeout(seconds, TIMER, { step = n }, { subject = self.correlation })
  end

  local function check_name(value, what, fn)
    if type(value) ~= "string" or value == "" then
      error(("wf:%s: %s must be a non-empty string"):format(fn, what), 3)
    end
  end

  local function check_timeout(opts, fn)
    if opts ~= nil and type(opts) ~= "table" then error("wf:" .. fn .. ": options must be a table", 3) end
    local t = opts and opts.timeout
    if t ~= nil and (type(t) ~= "number" or t < 0 or t > 1e9) then
      error("wf:" .. fn .. ": timeout must be a number of seconds from 0 to 1e9", 3)
    end
    return t
  end

  -- A message as kept in the history: what a workflow may look at.
  local function slim(msg)
    return { type = msg.type, kind = msg.kind, id = msg.id, source = msg.source, time = msg.time,
             subject = msg.subject, data = msg.data }
  end

  -- What a call or wait returns: the message's data and the message, or nil when it timed out
  -- (nothing else, so that `local data, msg = wf:call(...)` cannot mistake a reason for a message).
  local function received(outcome)
    if outcome.timeout then return nil end
    local data = outcome.msg.data
    if data == nil then data = {} end
    return data, outcome.msg
  end

  -- wf:call(to, type, data[, { timeout = s }]) -> reply data ({} when none), reply | nil
  function Wf:call(to, msg_type, data, opts)
    self:check_("call")
    check_name(to, "the destination", "call")
    check_name(msg_type, "the type", "call")
    local timeout = check_timeout(opts, "call")
    local what = "call " .. to .. " " .. msg_type
    local n, h = self:step_("call", what)
    if h then return received(self:outcome_(n, h)) end
    local id = self.ctx:send(to, msg_type, data, { correlationid = self.correlation })
    if timeout then self:timer_(n, timeout) end
    self:record_(n, "call", what, id, nil)
    return received(self:block_(n, "call", id, what, nil, timeout ~= nil))
  end

  -- wf:wait(type[, { timeout = s }]) -> event data ({} when none), event | nil
  function Wf:wait(msg_type, opts)
    self:check_("wait")
    check_name(msg_type, "the type", "wait")
    local timeout = check_timeout(opts, "wait")
    local what = "wait " .. msg_type
    local n, h = self:step_("wait", what)
    if h then return received(self:outcome_(n, h)) end
    local kept = store.inbox_take(self.name, self.id, msg_type)
    if kept then
      local outcome = { msg = choreo.unpack(kept) }
      self:record_(n, "wait", what, msg_type, outcome)
      return received(outcome)
    end
    if timeout then self:timer_(n, timeout) end
    self:record_(n, "wait", what, msg_type, nil)
    return received(self:block_(n, "wait", msg_type, what, nil, timeout ~= nil))
  end

  -- wf:signal_handler(name, fn): fn(data) runs when the signal `name` comes (`choreo signal`,
  -- host:signal), while the workflow waits; it may change the workflow's variables, not act.
  function Wf:signal_handler(name, fn)
    self:check_("signal_handler")
    check_name(name, "the signal's name", "signal_handler")
    if type(fn) ~= "function" then error("wf:signal_handler: expected a function(data)", 2) end
    self.handlers[name] = fn
  end

  -- wf:await(predicate[, { timeout = s }]) -> true once predicate() holds (tried now and after
  -- each signal), false when the timeout came first
  function Wf:await(predicate, opts)
    self:check_("await")
    if type(predicate) ~= "function" then error("wf:await: expected a function", 2) end
    local timeout = check_timeout(opts, "await")
    local n, h = self:step_("await", "await")
    if h then return not self:outcome_(n, h, predicate).timeout end
    if predicate() then
      self:record_(n, "await", "await", nil, { v = true })
      return true
    end
    if timeout then self:timer_(n, timeout) end
    self:record_(n, "await", "await", nil, nil)
    return not self:block_(n, "await", nil, "await", predicate, timeout ~= nil).timeout
  end

  -- wf:sleep(seconds): a durable timer
  function Wf:sleep(seconds)
    self:check_("sleep")
    if type(seconds) ~= "number" or seconds < 0 or seconds > 1e9 then
      error("wf:sleep: seconds must be a number from 0 to 1e9", 2)
    end
    local n, h = self:step_("sleep", "sleep")
    if h then self:outcome_(n, h); return end
    self:timer_(n, seconds)
    self:record_(n, "sleep", "sleep", nil, nil)
    self:block_(n, "sleep", nil, "sleep", nil, true)
  end

  -- A step that does not wait: done once, its value recorded and replayed.
  function Wf:once_(op, what, fn)
    local n, h = self:step_(op, what)
    if h then return h.outcome.v end
    local v, ref = fn()
    self:record_(n, op, what, ref, { v = v })
    return v
  end

  -- wf:send(to, type, data[, opts]) / wf:publish(type, data[, opts]) -> the message's id
  function Wf:send(to, msg_type, data, opts)
    self:check_("send")
    check_name(to, "the destination", "send")
    check_name(msg_type, "the type", "send")
    return self:once_("send", "send " .. to .. " " .. msg_type, function()
      local id = self.ctx:send(to, msg_type, data,
        { correlationid = self.correlation, subject = opts and opts.subject })
      return id, id
    end)
  end

  function Wf:publish(msg_type, data, opts)
    self:check_("publish")
    check_name(msg_type, "the type", "publish")
    return self:once_("publish", "publish " .. msg_type, function()
      local id = self.ctx:publish(msg_type, data,
        { correlationid = self.correlation, subject = opts and opts.subject })
      return id, id
    end)
  end

  -- wf:now() -> seconds, as first read
  function Wf:now()
    self:check_("now")
    return self:once_("now", "now", store.now)
  end

  -- wf:random([m[, n]]) -> as math.random, drawn once
  function Wf:random(m, n)
    self:check_("random")
    local r = self:once_("random", "random", math.random)
    if m == nil then return r end
    if n == nil then m, n = 1, m end
    return m + math.floor(r * (n - m + 1))
  end

  -- wf:uuid() -> a random (version 4) UUID, drawn once
  function Wf:uuid()
    self:check_("uuid")
    return self:once_("uuid", "uuid", function()
      local b = {}
      for i = 1, 16 do b[i] = math.random(0, 255) end
      b[7] = (b[7] & 0x0f) | 0x40
      b[9] = (b[9] & 0x3f) | 0x80
      return ("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x"):format(table.unpack(b))
    end)
  end

  -- wf:side_effect(fn) -> what fn returned the first time; fn must not wait
  function Wf:side_effect(fn)
    self:check_("side_effect")
    if type(fn) ~= "function" then error("wf:side_effect: expected a function", 2) end
    return self:once_("side_effect", "side_effect", function() return (fn()) end)
  end

  -- wf:compensate(fn): fn runs if the workflow fails, after those registered later
  function Wf:compensate(fn)
    self:check_("compensate")
    if type(fn) ~= "function" then error("wf:compensate: expected a function", 2) end
    self.compensations[#self.compensations + 1] = fn
  end

  -- wf:fail(reason): ends the workflow as failed, after its compensations
  function Wf:fail(reason)
    self:check_("fail")
    error(setmetatable({ reason = tostring(reason) }, Fail), 0)
  end

  -- wf:patched(change) -> whether to take the new path of a change to the workflow's code:
  -- true for an instance that reaches it under the new code (recorded, so replays agree),
  -- false for one whose history was recorded before the change, which keeps to the old path.
  function Wf:patched(change)
    self:check_("patched")
    check_name(change, "the change id", "patched")
    local what = "patched " .. change
    local h = self.history[self.n + 1]
    if h and not (h.op == "patched" and h.what == what) then return false end
    self:once_("patched", what, function() return true end)
    return true
  end

  -- wf:continue_as_new(input): ends this run and starts the workflow afresh with input, under
  -- the same id, with an empty history
  function Wf:continue_as_new(input)
    self:check_("continue_as_new")
    error(setmetatable({ input = input }, Continue), 0)
  end

  ---------------------------------------------------------------------------------------------
  -- running an instance

  -- The coroutine's body: the workflow function, then its compensations if it failed.
  -- Returns how it ended and with what.
  local function body(wf, fn, input)
    local ok, res = pcall(fn, wf, input)
    -- Out of budget or memory: the handler call failed, not the workflow; its message is
    -- retried and the instance replayed.
    if not ok and (store.limited() or res == "not enough memory") then error(res, 0) end
    if wf.stuck then return "stuck", wf.stuck end
    -- An error before the end of the recorded steps: the original run went past that point.
    if not ok and wf.n < wf.steps and getmetatable(res) ~= Continue then
      wf.stuck = ("step %d: the code raised while replaying its history: %s"):format(wf.n, tostring(res))
      return "stuck", wf.stuck
    end
    if ok then
      if wf.n < wf.steps then
        wf.stuck = ("the code ends after step %d but the history has %d steps"):format(wf.n, wf.steps)
        return "stuck", wf.stuck
      end
      return "completed", res
    end
    if wf.over then return "failed", wf.over end
    if getmetatable(res) == Continue then return "continue", res.input end
    local ended = getmetatable(res) == Cancel and "cancelled" or "failed"
    local reason = tostring(res)
    for i = #wf.compensations, 1, -1 do
      local cok, cerr = pcall(wf.compensations[i])
      if not cok then
        if store.limited() or cerr == "not enough memory" then error(cerr, 0) end
        if wf.stuck then return "stuck", wf.stuck end
        reason = reason .. "; compensation " .. i .. " failed: " .. tostring(cerr)
      end
    end
    return ended, reason
  end

  local run

  -- Stores how the run left the instance.
  local function save(wf, status, value)
    wf.rev = wf.rev + 1
    local w = wf.waiting or (status == "stuck" and wf.stored_wait) or {}
    local row = {
      name = wf.name, id = wf.id, status = status, steps = wf.steps, rev = wf.rev,
      started_ms = wf.started_ms, input = wf.input_encoded,
      waiting = w.step and ("step %d: %s"):format(w.step, w.what) or nil,
      wait_op = w.op, wait_ref = w.ref, wait_step = w.step or 0, wait_timer = w.timer,
    }
    if status == "completed" then row.result = choreo.pack(value)
    elseif status ~= "running" then row.error = tostring(value) end
    store.put(row)
    if status == "running" then
      keep(wf)
    else
      forget(wf.correlation)
      if status ~= "stuck" then
        wf.ctx:cancel_timeouts(wf.correlation)
        store.forget(wf.name, wf.id, true, false)
      end
      if status == "completed" then
        wf.ctx.log.debug("workflow", wf.name, wf.id, "completed")
      else
        wf.ctx.log.warn("workflow", wf.name, wf.id, status .. ":", tostring(value))
      end
    end
  end

  -- What became of a resume: waiting, ended, or started afresh (continue_as_new).
  local function settle(wf, ok, a, b)
    if not ok then error(a, 0) end -- the handler call's own failure (budget, memory)
    if coroutine.status(wf.co) == "suspended" then
      if a == WAIT then return save(wf, "running") end
      wf.waiting = nil
      return save(wf, "failed", "the workflow yielded by itself (coroutine.yield): it may only " ..
        "wait through wf:call, wf:wait and wf:sleep")
    end
    if a == "continue" then
      wf.continues = (wf.continues or 0) + 1
      if wf.continues > CONTINUE_MAX then
        return save(wf, "failed", "continue_as_new " .. CONTINUE_MAX .. " times without waiting")
      end
      wf.ctx:cancel_timeouts(wf.correlation)
      store.forget(wf.name, wf.id, false, true)
      local fresh = new_wf(wf.name, wf.id)
      fresh.rev, fresh.started_ms, fresh.continues = wf.rev, wf.started_ms, wf.continues
      fresh.base, fresh.n, fresh.steps = wf.steps, wf.steps, wf.steps
      fresh.input_encoded = choreo.pack(b)
      return run(fresh, b)
    end
    save(wf, a, b)
  end

  -- Runs the workflow function from the start (replaying the steps in wf.history).
  run = function(wf, input)
    wf.ctx = ctx
    wf.co = coroutine.create(body)
    settle(wf, store.resume(wf.co, wf, defined[wf.name], input))
  end

  -- A stored instance (a row of store.get) with its history, ready to be replayed.
  local function stored(row)
    local wf = new_wf(row.name, row.id, row)
    -- What it waits for as stored: kept if it gets stuck, so its reply, event or timer still
    -- finds it and is recorded for when fixed code resumes it.
    wf.stored_wait = row.wait_step > 0 and { step = row.wait_step, op = row.wait_op, ref = row.wait_ref,
                                             what = row.waiting and row.waiting:match("^step %d+: (.*)$") or "?",
                                             timer = row.wait_timer } or nil
    local recorded = store.history(row.name, row.id)
    for _, step in ipairs(recorded) do
      wf.history[step.step] = { op = step.op, what = step.what, ref = step.ref,
                                outcome = step.result and choreo.unpack(step.result) or nil }
    end
    wf.base = row.steps - #recorded -- this run's steps are the ones after it
    wf.n = wf.base
    for _, s in ipairs(store.signals(row.name, row.id)) do
      local list = wf.signals[s.during] or {}
      list[#list + 1] = { signal = s.signal, data = choreo.unpack(s.data) }
      wf.signals[s.during] = list
    end
    return wf, row.input and choreo.unpack(row.input) or nil
  end

  local function replay(row)
    run(stored(row))
  end

  -- The instance's coroutine kept in memory, if it is the stored revision's.
  local function kept(row)
    local c = cache[correlation_of(row.name, row.id)]
    if c and c.rev == row.rev and row.status == "running" and coroutine.status(c.wf.co) == "suspended" then
      return c.wf
    end
  end

  -- Moves an instance on with the outcome of the step it waits in (recorded already).
  local function advance(row, outcome)
    local wf = kept(row)
    -- Out of the cache while it moves: only a save that went through puts it back (keep), so a
    -- failure on the way leaves nothing ahead of the database in memory.
    forget(correlation_of(row.name, row.id))
    if wf then return settle(wf, store.resume(wf.co, outcome)) end
    replay(row)
  end

  -- Ends the step an instance waits in with outcome, and moves it on.
  local function complete(row, outcome)
    store.complete(row.name, row.id, row.wait_step, choreo.pack(outcome))
    if row.wait_timer then ctx:cancel_timeouts(correlation_of(row.name, row.id)) end
    advance(row, outcome)
  end

  -- A reply, event or timer of a workflow's conversation (see choreo_scripts_ops.for_workflow).
  function module.dispatch(msg)
    local key = msg.kind == "timeout" and msg.subject or msg.correlationid
    local name, id = parse(key)
    if not name or not defined[name] then return end
    local row = store.get(name, id)
    if not row or (row.status ~= "running" and row.status ~= "stuck") then return end
    local outcome
    if msg.kind == "timeout" then
      if msg.type ~= TIMER or type(msg.data) ~= "table" or msg.data.step ~= row.wait_step then return end
      outcome = row.wait_op == "sleep" and { v = true } or { timeout = true }
    elseif msg.kind == "reply" then
      if row.wait_op ~= "call" or msg.causationid ~= row.wait_ref then return end
      outcome = { msg = slim(msg) }
    elseif row.wait_op == "wait" and msg.type == row.wait_ref then
      outcome = { msg = slim(msg) }
    else
      -- Not awaited now: kept for a later wf:wait, unless the instance published it itself.
      if not (msg.source == choreo.name and store.emitted(msg.id)) then
        store.inbox_put(name, id, msg.type, choreo.pack(slim(msg)))
      end
      return
    end
    complete(row, outcome)
  end

  -- The instance a command names; nil, with a line in the log, when it names none running.
  local function running(d, what, or_stuck)
    if type(d) ~= "table" then error(what .. ": data must name the workflow and the id", 0) end
    local id = math.type(d.id) == "integer" and string.format("%d", d.id) or d.id
    local row = type(d.workflow) == "string" and type(id) == "string" and store.get(d.workflow, id)
    if row and (row.status == "running" or (or_stuck and row.status == "stuck")) and
        defined[d.workflow] then
      return row
    end
    ctx.log.warn(what, "of", tostring(d.workflow), tostring(id), "ignored:",
                 row and ("the instance is " .. row.status) or "no such instance")
  end

  -- Cancels a running instance: where it waits, wf:... raises, its compensations run, and it
  -- ends "cancelled".
  local function cancel(d)
    local row = running(d, "cancel", true)
    if not row then return end
    local reason = "cancelled" .. (d.reason and (": " .. tostring(d.reason)) or "")
    if row.status == "running" then return complete(row, { cancel = reason }) end
    -- A stuck one cannot run its compensations: its code no longer matches what it did.
    local wf = stored(row)
    wf.ctx = ctx
    save(wf, "cancelled", reason .. " (it was stuck: no compensation ran)")
  end

  -- A signal: recorded with the step the instance waits in, its handler run; an await it
  -- makes true ends.
  local function signal(d)
    local row = running(d, "signal")
    if not row then return end
    if type(d.signal) ~= "string" then error("signal: data.signal must name the signal", 0) end
    local wf = kept(row)
    if not wf then -- replayed up to where it waits, so that its handlers and variables are there
      forget(correlation_of(row.name, row.id))
      replay(row)
      row = store.get(row.name, row.id)
      wf = kept(row)
      if not wf then return end -- the replay left it stuck or ended
    end
    forget(correlation_of(row.name, row.id)) -- back in the cache only once saved (see advance)
    store.signal(row.name, row.id, row.wait_step, d.signal, choreo.pack(d.data))
    local fn = wf.handlers[d.signal]
    if fn then fn(d.data)
    else ctx.log.warn("workflow", row.name, row.id, "has no handler for signal", d.signal, "- ignored") end
    local w = wf.waiting
    if w and w.op == "await" and w.predicate() then return complete(row, { v = true }) end
    save(wf, "running") -- its variables changed: a rollback must not leave them in memory
  end

  -- A reload's check (choreo_scripts_ops.check_workflows), in the new code's state before it is
  -- swapped in: check(0) lists the running instances of the workflows it declares and returns
  -- their number; check(i) replays the i-th against its history without acting, and returns
  -- where the new code would leave it (nil when it keeps to its history).
  local checklist = {}
  function module.check(i)
    if i == 0 then
      checklist = {}
      if not module.any then return 0 end
      for _, row in ipairs(store.listed("running")) do
        if defined[row.name] then checklist[#checklist + 1] = row end
      end
      return #checklist
    end
    local listed = checklist[i]
    local row = store.get(listed.name, listed.id)
    if not row or row.status ~= "running" then return nil end
    local wf, input = stored(row)
    wf.checking, wf.ctx = true, ctx
    wf.co = coroutine.create(body)
    local ok, err = store.resume(wf.co, wf, defined[row.name], input)
    if not ok then error(("workflow %s %s: %s"):format(row.name, row.id, tostring(err)), 0) end
    if wf.stuck then return ("workflow %s %s would be stuck: %s"):format(row.name, row.id, wf.stuck) end
    return nil
  end

  ---------------------------------------------------------------------------------------------
  -- declaring and starting

  local function check_id(id, what)
    if math.type(id) == "integer" then return string.format("%d", id) end
    if type(id) ~= "string" or id == "" then
      error(what .. ": the instance id must be a non-empty string or an integer", 3)
    end
    return id
  end

  -- ctx:start(workflow, id, input) -> id, started: a second start of an id is a no-op (and
  -- replays an instance that is stuck, as after a fixed reload).
  function ctx.start(_, name, id, input)
    if type(name) ~= "string" or not defined[name] then
      error("ctx:start: no workflow named '" .. tostring(name) .. "'", 2)
    end
    id = check_id(id, "ctx:start")
    local row = store.get(name, id)
    if row then
      if row.status == "stuck" then replay(row) end
      return id, false
    end
    local wf = new_wf(name, id)
    wf.input_encoded = choreo.pack(input)
    run(wf, input)
    return id, true
  end

  -- choreo.workflow(name, fn): fn(wf, input) runs as a durable workflow.
  function choreo.workflow(name, fn)
    if type(name) ~= "string" or name == "" or name:find(":", 1, true) then
      error("choreo.workflow: the name must be a non-empty string without ':'", 2)
    end
    if defined[name] then error("choreo.workflow: '" .. name .. "' is defined twice", 2) end
    if type(fn) ~= "function" then error("choreo.workflow " .. name .. ": expected a function(wf, input)", 2) end
    if not module.any then
      module.any = true
      -- `choreo start` and host:start send this command to the host itself.
      choreo.on(START, function(msg, cctx)
        local d = msg.data
        if type(d) ~= "table" then error(START .. ": data must be { workflow =, id =, input = }", 0) end
        cctx:start(d.workflow, d.id, d.input)
      end)
      choreo.on(CANCEL, function(msg) cancel(msg.data) end)
      choreo.on(SIGNAL, function(msg) signal(msg.data) end)
      -- After a reload: every stuck instance is replayed under the new code.
      choreo.on(RESUME, function()
        for _, listed in ipairs(store.listed("stuck")) do
          local row = defined[listed.name] and store.get(listed.name, listed.id)
          if row and row.status == "stuck" then replay(row) end
        end
      end)
    end
    defined[name] = fn
  end

  return module
end
