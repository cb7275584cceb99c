"""Failing handlers: immediate retries, durable delayed back-off (1 s, 5 s, 30 s), dead letters
and `choreo dead list|show|retry|drop`; runaway and memory-hungry handlers cut off by --instructions
and --memory; and all the while, other messages keep flowing.

One host runs the whole back-off (about 37 s), so the case is made of steps that check
different things along the way, each reported on its own."""
import os
import re
import subprocess
import sys
import time
from datetime import datetime

import harness
from harness import Suite, check, check_eq, wait_until

suite = Suite("failures")

SERVICE = r'''
local choreo = require "choreo"
local FLAG, ATTEMPTS = %r, %r
choreo.db:exec("create table if not exists done(type text, x integer)")

local function note(what)  -- outside the transaction: survives the rollback of a failed attempt
  local f = assert(io.open(ATTEMPTS, "a"))
  f:write(what, "\n")
  f:close()
end

choreo.on("Boom", function(msg, ctx)
  note("Boom")
  ctx.db:exec("insert into done values ('Boom', ?)", msg.data.x)  -- rolled back
  ctx:publish("BoomEcho", { x = msg.data.x })                     -- rolled back too
  error("boom " .. msg.data.x)
end)

choreo.on("Flaky", function(msg, ctx)
  local f = io.open(FLAG)
  if f then
    f:close()
    error("the flag file is still there")
  end
  ctx.db:exec("insert into done values ('Flaky', ?)", msg.data.x)
end)

choreo.on("Spin", function(msg, ctx)
  note("Spin")
  while true do end
end)


choreo.on("Hog", function(msg, ctx)
  note("Hog")
  local t = {}
  for i = 1, 1e9 do t[i] = string.rep("x", 100000) .. i end
end)

choreo.on("Ok", function(msg, ctx)
  ctx.db:exec("insert into done values ('Ok', ?)", msg.data.x)
end)

choreo.on("Many", function(msg, ctx)
  for i = 1, msg.data.n do ctx:publish("Ok", { x = msg.data.from + i - 1 }) end
end)
'''

# A peer whose Ok events svc handles (svc has no handler for Spray itself).
OTHER = r'''
local choreo = require "choreo"
choreo.on("Spray", function(msg, ctx)
  for i = 1, msg.data.n do ctx:publish("Ok", { x = msg.data.from + i - 1 }) end
end)
'''

INSTRUCTIONS = 1000000
MEMORY = 50000000


def log_time(line):
    return datetime.strptime(line.split()[0][:26], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def dead_list(host):
    r = host.cli("dead", "list")
    check(r.rc == 0, "dead list failed: %r" % r)
    out = {}
    for line in r.out.splitlines():
        m = re.match(r"(\d+)  (\S+)  from (\S+)/(\d+)  (being retried, died )?after (\d+) "
                     r"attempts: (.*)$", line)
        check(m, "dead list line: %r" % line)
        out[m.group(2)] = {"id": int(m.group(1)), "source": m.group(3), "seq": int(m.group(4)),
                           "retrying": bool(m.group(5)), "attempts": int(m.group(6)),
                           "error": m.group(7)}
    return out


def ok_count(host):
    return host.scalar("select count(*) from done where type = 'Ok'")


def no_retry_storm(host):
    """Fails fast when delayed retries run in a tight loop instead of waiting (a host in that
    state answers nothing, so every later wait would only time out)."""
    storm = len(re.findall(r"failed \(attempt 4\)", host.log()))
    if storm > 50:
        raise harness.TestFailure("retry storm: %d log lines about a 4th attempt; delayed "
                                  "retries run again and again instead of waiting" % storm)
    return True


@suite.test
def a_delayed_retry_leaves_the_host_responsive(w):
    """The smallest case of the back-off: one message that always fails. Once its first
    delayed retry (after 1 s) has run, the host must still answer and stop on SIGTERM."""
    svc = w.host("svc", w.scripts("svc", {"svc.lua": 'local choreo = require "choreo"\n'
                                                  'choreo.on("Boom", function() error("boom") end)\n'}))
    svc.send("svc", "Boom")
    svc.wait_log(r"Boom svc/1 failed \(attempt 3\), retrying in 1s", 10)
    svc.wait_log(r"Boom svc/1 failed \(attempt 4\), retrying in 5s", 10)
    time.sleep(0.5)
    r = svc.cli("status", timeout=15)
    attempts4 = len(re.findall(r"failed \(attempt 4\)", svc.log()))
    check(r.rc == 0, "status after the first delayed retry: %r (the log has %d lines about a "
          "4th attempt)" % (r, attempts4))
    check_eq(attempts4, 1, "4th attempts so far")
    check_eq(svc.scalar("select attempts from choreo_retries"), 4, "attempts recorded")
    check_eq(svc.stop(grace=5), 0, "exit status on SIGTERM")


STUCK = r'''
local choreo = require "choreo"
choreo.db:exec("create table if not exists done(type text, x integer)")
local attempts = 0
choreo.on("Stuck", function(msg, ctx)
  ctx.db:exec("insert into done values ('Stuck', ?)", msg.data.x)  -- rolled back by the stop
  attempts = attempts + 1
  if msg.data.how == "retry" and attempts < 4 then error("failing until the retry timer runs it") end
  ctx.log.info("stuck now")
  if msg.data.how == "sql" then
    ctx.db:one("with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c")
  else
    while true do end
  end
end)
'''

FIXED = r'''
local choreo = require "choreo"
choreo.db:exec("create table if not exists done(type text, x integer)")
choreo.on("Stuck", function(msg, ctx) ctx.db:exec("insert into done values ('Stuck', ?)", msg.data.x) end)
'''


@suite.test
def sigterm_stops_a_host_whose_handler_never_returns(w):
    """A handler in a Lua loop or an endless query, with a budget far too large to help: SIGTERM
    still stops the host (the handler is interrupted from outside the loop it holds), the batch
    rolls back, and after a restart with fixed code the message is handled once: nothing lost,
    nothing applied twice. The host printed how long the stop took. "retry": the loop begins in
    the first delayed retry, run by the retry timer; the interrupted retry stays due, and the
    timer armed again for it at once ran again in the same turn of the loop (libuv 1.44), for
    ever, so the stop was never taken: the host exited by `choreo run`'s 10 s bound, status 1."""
    for how in ("sql", "lua", "retry"):
        scripts = w.scripts("stuck_" + how, {"svc.lua": STUCK})
        svc = w.host("stuck_" + how, scripts, extra=["--instructions", str(10 ** 15)])
        with w.step("SIGTERM while a handler runs an endless " + how):
            svc.send(svc.name, "Stuck", {"x": 1, "how": how})
            svc.wait_log(r"stuck now", 10)
            start = time.monotonic()
            check_eq(svc.stop(grace=30), 0, "exit status on SIGTERM (not killed)")
            print("    stopped in %.2f s" % (time.monotonic() - start))
            check(re.search(r"stopping: the batch under way rolled back", svc.log()),
                  "the log says the batch rolled back")
            check_eq(svc.scalar("select count(*) from done"), 0, "effects of the stopped handler")
        with w.step("restarted with fixed code, the message is handled once (%s)" % how):
            with open(os.path.join(scripts, "svc.lua"), "w") as f:
                f.write(FIXED)
            svc.start()
            wait_until(lambda: svc.scalar("select count(*) from done") == 1, 20, "the Stuck row")
            time.sleep(0.3)
            check_eq(svc.scalar("select count(*) from done"), 1, "rows after the restart")
            check_eq(svc.scalar("select count(*) from choreo_dead_letters"), 0, "dead letters")


# Frames of 1 MiB back to back: each transaction publishes a thousand 1 KB events and the next
# Burst, until the host stops.
BURST = r'''
local choreo = require "choreo"
local PAD = string.rep("x", 1000)
choreo.on("Burst", function(msg, ctx)
  for i = msg.data.from, msg.data.from + 999 do ctx:publish("Tick", { i = i, pad = PAD }) end
  ctx:publish("Burst", { from = msg.data.from + 1000 })
end)
'''


@suite.test
def sigterm_stops_a_host_publishing_big_frames_on_a_busy_cpu(w):
    """NNG 1.5 can hang for good when one of its connections is closed in the middle of a
    message (docs/ARCHITECTURE.md, on NNG 1.5): no connection of the process is freed again,
    and nng_close never returns. The probe of a PUB listener used to be a SUB socket, sent every
    frame and closed every 2 s; on a busy CPU one such close soon hit that, and SIGTERM then
    left the host hanging in nng_close for good (this case hung in 8 runs of 8 before the fix;
    the first seen hung with a consumer under valgrind). Here a host shares its CPU with two
    spinning processes and publishes on six PUB listeners (its own and five --listen), each
    probed. It must exit on SIGTERM, cleanly (not by the 10 s stop bound of `choreo run`, which
    would mean that NNG hung), and keep what it committed."""
    cpu = min(os.sched_getaffinity(0))
    for _ in range(2):
        w.spawn([sys.executable, "-c",
                 "import os\nos.sched_setaffinity(0, {%d})\nwhile True: pass" % cpu])
    listen = []
    for _ in range(5):  # PUB on P, FETCH on P + 1: each listener is probed
        listen += ["--listen", "tcp://127.0.0.1:%d" % harness.free_port_pair()]
    svc = w.host("svc", w.scripts("svc", {"svc.lua": BURST}),  # --retain: a smaller database
                 extra=["--cpu", str(cpu), "--retain", "1s"] + listen)
    svc.publish("Burst", {"from": 1})
    wait_until(lambda: svc.head() > 10000, 30, "the first frames")
    time.sleep(15)  # rounds of probes while the frames flow
    head = svc.head()
    svc.proc.terminate()
    try:
        status = svc.proc.wait(timeout=30 * harness.SLOW)
    except subprocess.TimeoutExpired:
        raise harness.TestFailure("still running %d s after SIGTERM:\n%s"
                                  % (30 * harness.SLOW, svc.log_tail(5)))
    check_eq(status, 0, "exit status on SIGTERM (log: %s)" % svc.log_tail(3))
    check(not re.search(r"NNG 1.5 still holds", svc.log()), "NNG let go of every socket")
    check(svc.head() >= head, "the log kept what was committed before SIGTERM")


@suite.test
def sigterm_exits_cleanly_when_nng_never_lets_go_of_a_socket(w):
    """NNG 1.5 can wait forever in nng_close (docs/ARCHITECTURE.md, on NNG 1.5); preloading an
    nng_close that never returns makes that certain. By then the host has nothing left to
    commit, so SIGTERM must still end it: with status 0, in a couple of seconds, saying why, and
    with every message it handled kept and none applied twice after a restart."""
    svc = w.host("svc", w.scripts("svc", {"svc.lua": SERVICE % ("", "")}), start=False)
    svc.env = {"LD_PRELOAD": os.environ["CHOREO_NNG_CLOSE_HANGS"],
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    svc.start()
    svc.publish("Many", {"n": 50, "from": 1})
    wait_until(lambda: ok_count(svc) == 50, 20, "50 Ok rows")
    head = svc.head()
    with w.step("SIGTERM: nng_close never returns"):
        start = time.monotonic()
        svc.proc.terminate()
        try:
            status = svc.proc.wait(timeout=20 * harness.SLOW)
        except subprocess.TimeoutExpired:
            raise harness.TestFailure("still running after SIGTERM:\n%s" % svc.log_tail(5))
        print("    exited in %.2f s" % (time.monotonic() - start))
        check_eq(status, 0, "exit status (log: %s)" % svc.log_tail(3))
        check(re.search(r"stopped, but NNG 1.5 still holds a connection", svc.log()),
              "the log says why it did not wait for NNG")
    with w.step("restarted without the preload: everything kept, nothing twice"):
        svc.env = {}
        svc.start()
        check_eq(svc.head(), head, "log head")
        svc.publish("Ok", {"x": 51})
        wait_until(lambda: ok_count(svc) == 51, 20, "the 51st Ok row")
        time.sleep(0.3)
        check_eq(ok_count(svc), 51, "Ok rows (none applied twice)")


PCALL = r'''
local choreo = require "choreo"
choreo.db:exec("create table if not exists done(type text, caught integer, last text)")
choreo.on("Caught", function(msg, ctx)   -- catches the limit a hundred times, then commits
  local caught, last = 0, nil
  for _ = 1, 100 do
    local ok, err = pcall(function() while true do end end)
    if not ok then caught, last = caught + 1, err end
  end
  ctx.db:exec("insert into done values ('Caught', ?, ?)", caught, tostring(last))
end)
choreo.on("Forever", function(msg, ctx)  -- catches the limit forever
  while true do pcall(function() while true do end end) end
end)
choreo.on("Ok", function(msg, ctx) ctx.db:exec("insert into done values ('Ok', 0, '')") end)
'''


@suite.test
def pcall_cannot_swallow_the_instruction_limit(w):
    """docs/ARCHITECTURE.md / scripts.c: the count hook keeps raising once the budget is spent, so a
    handler's own pcall cannot turn a runaway into a success."""
    svc = w.host("svc", w.scripts("svc", {"svc.lua": PCALL}),
                 extra=["--instructions", str(INSTRUCTIONS)])
    svc.send("svc", "Caught")
    svc.send("svc", "Ok")
    wait_until(lambda: svc.scalar("select count(*) from done where type = 'Ok'") == 1, 20,
               "the Ok after Caught")
    row = svc.query("select caught, last from done where type = 'Caught'")
    check_eq(row, [], "what Caught committed after catching the instruction limit %s times "
             "(it should have failed instead)" % (row[0][0] if row else 0))
    svc.wait_log(r"Caught svc/1 failed \(attempt 3\)", 5)


@suite.test
def pcall_in_a_loop_cannot_run_forever(w):
    svc = w.host("svc", w.scripts("svc", {"svc.lua": PCALL}),
                 extra=["--instructions", str(INSTRUCTIONS)])
    svc.send("svc", "Forever")
    time.sleep(1)
    r = svc.cli("status", timeout=15)
    check(r.rc == 0, "status while Forever runs (it should have been cut off): %r" % r)
    svc.wait_log(r"Forever svc/1 failed \(attempt 3\)", 10)


@suite.test
def failing_handlers(w):
    flag, attempts = os.path.join(w.dir, "flag"), os.path.join(w.dir, "attempts")
    open(flag, "w").close()
    svc = w.host("svc", w.scripts("svc", {"svc.lua": SERVICE % (flag, attempts)}),
                 extra=["--instructions", str(INSTRUCTIONS), "--memory", str(MEMORY)])
    other = w.host("other", w.scripts("other", {"other.lua": OTHER}))
    for type_, x in (("Boom", 1), ("Flaky", 2), ("Spin", 3), ("Hog", 4)):
        svc.send("svc", type_, {"x": x})
    dead = {}

    with w.step("failed attempts roll back their effects"):
        svc.wait_log(r"Boom svc/1 failed \(attempt 3\)", 10)
        check_eq(svc.query("select type from done where type != 'Ok'"), [], "effects of failures")
        check_eq(svc.scalar("select count(*) from choreo_log where type = 'BoomEcho'"), 0,
                 "events published by a failed attempt")

    with w.step("three immediate attempts, then a delayed retry"):
        m = svc.wait_log(r".*Boom svc/1 failed \(attempt 3\), retrying in 1s: (.*)", 10)
        check(re.search(r"svc\.lua:\d+: boom 1$", m.group(1)), "error with file:line: %r" % m.group(0))
        wait_until(lambda: open(attempts).read().count("Boom") >= 4, 10, "a 4th attempt of Boom")
        svc.wait_log(r"Boom svc/1 failed \(attempt 4\), retrying in 5s", 5)

    with w.step("runaway handler is cut off"):
        spin = svc.wait_log(r".*Spin svc/3 failed \(attempt 3\), retrying in 1s: (.*)", 10)
        check(svc.alive(), "svc survives a runaway handler")

    with w.step("runaway handler's error names the instruction limit"):
        check(re.search(r"svc\.lua:\d+: exceeded the instruction limit \(%d\)" % INSTRUCTIONS,
                        spin.group(1)),
              "the error should say the instruction limit was exceeded: %r" % spin.group(0))

    with w.step("memory blow-up is cut off"):
        svc.wait_log(r"Hog svc/4 was cut off by a limit: not tried again at once", 20)
        m = svc.wait_log(r".*Hog svc/4 failed \(attempt 3\), retrying in 1s: (.*)", 20)
        check(re.search(r"svc\.lua:\d+: exceeded the memory limit \(%d bytes\)$" % MEMORY,
                        m.group(1)), "Hog's error names where it ran out: %r" % m.group(1))
        check(svc.alive(), "svc survives a memory blow-up")

    with w.step("other messages keep flowing during the back-off"):
        # By now the delayed retries are running: events from a peer and commands through the
        # control socket must still be handled promptly.
        # Cut off by the memory limit, Hog was not tried again at once: its second attempt is
        # the first delayed retry.
        wait_until(lambda: open(attempts).read().count("Hog") >= 2, 10, "a delayed retry of Hog")
        other.publish("Spray", {"from": 1001, "n": 300})  # other's Ok events reach svc
        r = svc.cli("send", "svc", "Many", '{"from": 1, "n": 300}', timeout=15)
        check(r.rc == 0, "send during the back-off: %r" % r)
        wait_until(lambda: no_retry_storm(svc) and ok_count(svc) == 600, 10,
                   "svc to handle 600 Ok messages")

    with w.step("dead-lettered after 1 s, 5 s and 30 s of back-off"):
        wait_until(lambda: no_retry_storm(svc) and
                   svc.scalar("select count(*) from choreo_dead_letters") == 4, 45,
                   "four dead letters", interval=0.5)
        dead.update(dead_list(svc))
        check_eq(sorted(dead), ["Boom", "Flaky", "Hog", "Spin"], "dead letter types")
        for d in dead.values():
            check_eq(d["attempts"], 6, "attempts before a dead letter")
            check_eq(d["source"], "svc", "dead letter source")
        check(re.search(r"svc\.lua:\d+: boom 1$", dead["Boom"]["error"]), "Boom's error: %r" % dead["Boom"])
        check_eq(open(attempts).read().count("Boom\n"), 6, "attempts of Boom run")
        check_eq(svc.status()["dead letters"], 4, "dead letters in status")
        # The delays between attempts 3, 4, 5 and 6 are the back-off steps.
        times = [log_time(line) for line in svc.log().splitlines()
                 if re.search(r"Boom svc/1 (failed \(attempt [345]\)|dead-lettered after 6)", line)]
        check_eq(len(times), 4, "log lines about Boom's delayed attempts")
        gaps = [b - a for a, b in zip(times, times[1:])]
        for gap, want in zip(gaps, (1, 5, 30)):
            check(want - 0.05 <= gap <= want + 2 * harness.SLOW,
                  "back-off gaps %r, expected about 1, 5, 30 s" % gaps)
        row = svc.query("select source, seq, type, attempts, error, traceback from "
                        "choreo_dead_letters where type = 'Boom'")
        check_eq(len(row), 1, "Boom's dead letter rows")
        source, seq, type_, n, error, tb = row[0]
        check_eq((source, seq, type_, n), ("svc", 1, "Boom", 6), "Boom's dead letter")
        check("stack traceback" in tb and re.search(r"svc\.lua:\d+", tb), "traceback: %r" % tb)
        check_eq(svc.scalar("select count(*) from choreo_retries"), 0, "retries left")
        check_eq(ok_count(svc), 600, "Ok messages (none lost or repeated meanwhile)")

    with w.step("dead show prints one letter whole: message, error, traceback"):
        check(dead, "no dead letters to work with (see above)")
        r = svc.cli("dead", "show", str(dead["Boom"]["id"]))
        check(r.rc == 0, "dead show: %r" % r)
        check(re.search(r"^type\s+Boom$", r.out, re.M), "type: %r" % r.out)
        check(re.search(r"^attempts\s+6$", r.out, re.M), "attempts: %r" % r.out)
        check(re.search(r"^error\s+.*svc\.lua:\d+: boom 1$", r.out, re.M), "error: %r" % r.out)
        check(re.search(r'"x":\s*1', r.out), "the message's data: %r" % r.out)
        check("stack traceback" in r.out, "the traceback: %r" % r.out)
        r = svc.cli("dead", "show", "999999")
        check(r.rc == 1 and "no dead letter with id 999999" in r.err, "unknown id: %r" % r)

    with w.step("dead retry re-runs a message"):
        check(dead, "no dead letters to work with (see above)")
        os.unlink(flag)
        r = svc.cli("dead", "retry", str(dead["Flaky"]["id"]))
        check_eq((r.rc, r.out.strip()), (0, "retrying %d" % dead["Flaky"]["id"]), "dead retry")
        wait_until(lambda: svc.query("select x from done where type = 'Flaky'") == [(2,)], 10,
                   "Flaky to run once it can succeed")
        check("Flaky" not in dead_list(svc), "Flaky left the dead letters")
        check_eq(svc.status()["dead letters"], 3, "dead letters after a successful retry")

    with w.step("dead drop forgets a message"):
        check(dead, "no dead letters to work with (see above)")
        r = svc.cli("dead", "drop", str(dead["Boom"]["id"]))
        check_eq((r.rc, r.out.strip()), (0, "dropped %d" % dead["Boom"]["id"]), "dead drop")
        check("Boom" not in dead_list(svc), "Boom left the dead letters")
        r = svc.cli("dead", "drop", str(dead["Boom"]["id"]))
        check_eq(r.rc, 1, "dropping it again fails")
        check_eq(r.err.strip(), "choreo: no dead letter with id %d" % dead["Boom"]["id"], "the error")
        r = svc.cli("dead", "retry", "999999")
        check_eq((r.rc, r.err.strip()), (1, "choreo: no dead letter with id 999999"), "retry unknown id")
        check_eq(svc.status()["dead letters"], 2, "dead letters after a drop")

    with w.step("a retried dead letter that fails again goes back to a sane back-off"):
        check(dead, "no dead letters to work with (see above)")
        mark = svc.log_mark()
        r = svc.cli("dead", "retry", str(dead["Hog"]["id"]))
        check_eq(r.rc, 0, "dead retry Hog")
        hog = dead_list(svc).get("Hog")
        check(hog and hog["id"] == dead["Hog"]["id"] and hog["retrying"],
              "Hog keeps its letter, marked as being retried: %r" % hog)
        r = svc.cli("dead", "retry", str(dead["Hog"]["id"]))
        check_eq((r.rc, r.err.strip()),
                 (1, "choreo: dead letter %d is being retried already" % dead["Hog"]["id"]),
                 "a second retry while the first is under way")
        m = svc.wait_log(r"Hog svc/4 (failed \(attempt (-?\d+)\), retrying in (-?\d+)s|"
                         r"dead-lettered after \d+ attempts)", 10, since=mark)
        time.sleep(0.2)
        check(svc.alive(), "svc survives: %s" % svc.log()[mark:][-600:])
        check(m.group(3) is None or 0 <= int(m.group(3)) <= 30,
              "the next retry should be due within the back-off steps (at most 30 s): %r"
              % m.group(0))
        due = svc.scalar("select due_ms from choreo_retries")
        delay = due / 1000.0 - time.time() if due is not None else None
        check(delay is None or delay <= 31, "Hog's next retry is due in %r s" % delay)

    with w.step("the host is healthy after all that"):
        r = svc.cli("send", "svc", "Ok", '{"x": 6000}', timeout=15)
        check(r.rc == 0, "send: %r" % r)
        wait_until(lambda: svc.scalar("select count(*) from done where x = 6000") == 1, 10,
                   "one more Ok")
        check(svc.alive() and other.alive(), "both hosts alive")


if __name__ == "__main__":
    suite.main()
