"""Chaos: three hosts, a numbered stream of orders flowing through them, `kill -9` of a random
host at random moments, hot reloads in between, and a hostile peer feeding garbage to every
socket throughout. Once the killing stops and everything has caught up: every effect happened
exactly once, no saga is left open, no timeout is left pending, nothing failed or was
dead-lettered, and every host has applied every other host's whole log.

    python3 test_chaos.py CHOREO_BIN [--kills N] [--seed S] [--rate R] [CASE...]

The flow of order i (1..N):
  producer  a durable chain of `Pump` timeouts (every 0.1 s) publishes OrderPlaced
            {order = i} at a steady rate from the start, a late Pump all that came due
            meanwhile (table `produced`), and records each OrderDone it hears (table `done`).
  saga      the saga `Order` starts on OrderPlaced (table `placed`), sends the command Apply to
            the consumer, sets a short `Settle` timeout (0 to 0.8 s) and a 90 s `Overdue`
            watchdog; it completes once it has both the consumer's reply Applied (`replied`)
            and its Settle timeout (`settled`): it records the order (`finished`) and
            publishes OrderDone. Overdue must never fire (`overdue`, expected empty): the
            completion cancels it.
  consumer  Apply inserts a row (table `effects`) and replies Applied.
Every table is a plain insert, no unique key: a message applied twice shows as a second row,
one lost as a missing row. A duplicate reply or timeout reaching a completed instance would be
a saga miss (`choreo_saga_misses`, expected empty).

The kills: every 0.2-1.5 s (uniformly random) a random host gets SIGKILL; half the time it is
restarted at once on the same database, otherwise it stays down until the next kill. A host
may be killed while it starts. Between kills, one time in three, a script of a random host is
rewritten (a version bump: the same behaviour), which a live host hot-reloads and a dead one
loads when it starts. The hostile peer (choreo_poke) runs all the while: garbage and gapped
frames on a PUB endpoint of its own that every host discovers, garbage FETCH answers from its
REP endpoint, garbage and odd FETCH requests to each host's FETCH socket, garbage to each
host's control socket, and connections to each socket of a host that hang up at once (which
deafened NNG 1.5's listeners for good: see choreo_bus_listeners in runtime/host/bus.h). Its
last round of hang-ups comes after the last kill, when no restart can cure what it breaks, and
it keeps going until everything has caught up.

A second, short case does only that last part, on purpose: hang-ups on every socket of a host,
then its peer restarts and must catch up from it, and its control socket must answer.

100 kills by default, in a normal build and in a sanitizer build alike: the kills take about
90 s (the pauses between them), the whole file about 105 s in a normal build and 120 s in a
sanitizer build on the development machine, well inside ctest's 300 s (the load, about 40
orders a second, is light enough for a sanitized host). `--kills N` for long runs; `--seed S`
replays the same choices (the timing of course differs); the seed is printed first;
`--rate R` publishes R orders a second instead of 40 (a heavier load).
CHOREO_CHAOS_LOG=debug gives the hosts' debug logs, and CHOREO_IT_KEEP=1 keeps the directory
(logs, databases) of a failed run.
"""
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

import harness
from harness import (Suite, TestFailure, check, check_eq, check_ticks, encode_frame,
                     encode_message, mp_pack)

suite = Suite("chaos")
NAMES = ("producer", "saga", "consumer")
WATCHDOG_S = 90  # the saga's Overdue timeout: far past any honest delay


def parse_args(argv):
    """Takes --kills N, --seed S and --rate R out of argv; returns ({option: value}, rest)."""
    opts = {"kills": None, "seed": None, "rate": 40}
    rest = []
    it = iter(argv)
    for a in it:
        if a in ("--kills", "--seed", "--rate"):
            v = next(it, None)
            if v is None or not re.fullmatch(r"\d+", v) or (a == "--rate" and int(v) == 0):
                print("%s needs a %s integer" % (a, "positive" if a == "--rate" else
                                                 "non-negative"), file=sys.stderr)
                sys.exit(2)
            opts[a[2:]] = int(v)
        else:
            rest.append(a)
    return opts, rest


OPTS, sys.argv[1:] = parse_args(sys.argv[1:])
KILLS, SEED, RATE = OPTS["kills"], OPTS["seed"], OPTS["rate"]
# A long or heavy run gets the time it needs; ctest's runs keep the harness's default.
DEADLINE = 280 if KILLS is None and RATE == 40 else (
    280 + int((KILLS or 100) * (2.5 + 0.85 * RATE / 100)))
STARTED = time.monotonic()


# ---------------------------------------------------------------------------------------------
# The scripts. VERSION is bumped by the reloads and recorded in every row; nothing else changes.

PRODUCER = r'''
-- chaos producer, revision %(version)d
local choreo = require "choreo"
local VERSION = %(version)d
choreo.db:exec("create table if not exists produced(order_id integer not null, version integer)")
choreo.db:exec([[create table if not exists done(order_id integer not null, msg_id text,
  version integer)]])
-- Orders 1..n at `rate` a second from the start, whatever the downtime: a Pump that comes
-- late publishes all that came due meanwhile.
choreo.on("Start", function(msg, ctx)
  local d = msg.data
  ctx:timeout(0, "Pump", { next = 1, n = d.n, rate = d.rate, every = d.every, t0 = choreo.now() })
end)
choreo.on("Pump", function(msg, ctx)
  local d = msg.data
  local last = math.min(d.n, math.floor((choreo.now() - d.t0) * d.rate))
  for i = d.next, last do
    ctx.db:exec("insert into produced values (?, ?)", i, VERSION)
    ctx:publish("OrderPlaced", { order = i })
  end
  if last < d.n then
    ctx:timeout(d.every, "Pump", { next = math.max(d.next, last + 1), n = d.n, rate = d.rate,
                                   every = d.every, t0 = d.t0 })
  end
end)
choreo.on("OrderDone", function(msg, ctx)
  ctx.db:exec("insert into done values (?, ?, ?)", msg.data.order, msg.id, VERSION)
end)
'''

SAGA = r'''
-- chaos saga, revision %(version)d
local choreo = require "choreo"
local VERSION = %(version)d
for _, t in ipairs({ "placed", "replied", "settled", "finished", "overdue" }) do
  choreo.db:exec("create table if not exists " .. t ..
    "(order_id integer not null, msg_id text, version integer)")
end
local function note(ctx, what, msg)
  ctx.db:exec("insert into " .. what .. " values (?, ?, ?)", msg.data.order, msg.id, VERSION)
end
local function finish_if_done(state, msg, ctx)
  if state.replied and state.settled then
    note(ctx, "finished", msg)
    ctx:publish("OrderDone", { order = msg.data.order })
    ctx:complete()
  end
end
choreo.saga("Order", {
  starts = { "OrderPlaced" },
  correlate = { OrderPlaced = "order", Applied = "order" },
  on = {
    OrderPlaced = function(state, msg, ctx)
      note(ctx, "placed", msg)
      ctx:send("consumer", "Apply", { order = msg.data.order })
      ctx:timeout((msg.data.order %% 5) * 0.2, "Settle", { order = msg.data.order })
      ctx:timeout(%(watchdog)d, "Overdue", { order = msg.data.order })
    end,
    Applied = function(state, msg, ctx)
      note(ctx, "replied", msg)
      state.replied = true
      finish_if_done(state, msg, ctx)
    end,
    Settle = function(state, msg, ctx)
      note(ctx, "settled", msg)
      state.settled = true
      finish_if_done(state, msg, ctx)
    end,
    Overdue = function(state, msg, ctx) note(ctx, "overdue", msg) end,
  },
})
'''

CONSUMER = r'''
-- chaos consumer, revision %(version)d
local choreo = require "choreo"
local VERSION = %(version)d
choreo.db:exec([[create table if not exists effects(order_id integer not null, msg_id text,
  version integer)]])
choreo.on("Apply", function(msg, ctx)
  ctx.db:exec("insert into effects values (?, ?, ?)", msg.data.order, msg.id, VERSION)
  ctx:reply("Applied", { order = msg.data.order })
end)
'''

SCRIPTS = {"producer": PRODUCER, "saga": SAGA, "consumer": CONSUMER}


def script_text(name, version):
    return SCRIPTS[name] % {"version": version, "watchdog": WATCHDOG_S}


def write_script(path, text):
    """Write a sibling, then rename over the script: a host starting or reloading meanwhile
    sees the old file or the new one, never half of one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


# ---------------------------------------------------------------------------------------------
# The hostile peer

class Hostile:
    """A thread running choreo_poke against the hosts until stopped, one poke at a time, each
    bounded in time and killed by its PID if it overstays."""

    def __init__(self, world, rng):
        self.w, self.rng = world, rng
        self.bus = world.bus
        self.stop_flag = threading.Event()
        self.runs = 0
        self.landed = 0  # pokes that reached a live socket of a host
        self.errors = []
        self.evil_seq = 0
        self.hang_ups = 0
        self.files = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        check(harness.POKE, "choreo_poke is not built (set CHOREO_POKE)")
        self.thread.start()

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=60)
        check(not self.thread.is_alive(), "the hostile peer did not stop")

    def garbage(self):
        rng = self.rng
        good = encode_message("evil", 1, "Noise", data={"x": 1})
        choices = [
            lambda: bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 2048))),
            lambda: b"",
            lambda: b"\xdd\xff\xff\xff\xff" + b"\x01" * 16,
            lambda: b"\x91" * 5000 + b"\x01",
            lambda: encode_frame("evil", 1, [good, good])[:-rng.randrange(1, 20)],
            lambda: mp_pack([1, "evil", 1, 2 ** 32 - 1, 1]) + good,
            lambda: mp_pack([1, "evil", 2 ** 63 - 1, 2, 2 ** 63 - 1]) + good + good,
            lambda: mp_pack([99, "evil", 1, 1, 1]) + good,
            lambda: encode_frame("evil", 1, [good]) + b"\xc1",
            lambda: mp_pack([1, "evil", 1, 1, 1]) + mp_pack([1, 2, 3]),
        ]
        return rng.choice(choices)()

    def evil_frame(self):
        """A well-formed frame of evil's own, of a type no host handles; sometimes far ahead of
        what was sent before, so that the hosts see a gap and FETCH from evil."""
        if self.rng.random() < 0.5:
            first = self.rng.randrange(1000, 10 ** 6)
        else:
            self.evil_seq += 1
            first = self.evil_seq
        return encode_frame("evil", first, [encode_message("evil", first, "Noise",
                                                           data={"x": first})])

    def fetch_request(self):
        after = self.rng.choice([-1, 0, 5, 2 ** 40, 2 ** 63 - 1, self.rng.randrange(0, 10 ** 5)])
        return self.rng.choice([mp_pack(["fetch", after]), mp_pack(["fetch", after, "evil"]),
                                mp_pack(["fetch"]), mp_pack(["fetcH", 0]),
                                mp_pack(["fetch", "0", "x"])])

    def control_request(self):
        return self.rng.choice([
            b'{"op": "status"}', b'{"op": "format-disk"}\0', b'{"op": 7}', b'["op"]',
            b'{"op": "publish"}', b'{"op": "send", "type": "T", "to": "../x"}',
            b'{"op": "publish", "type": "T", "data": "{x"}', b"[" * 5000,
            b'{"op": "dead", "action": "burn", "id": 1}', b'{"op": "status"',
        ] + [self.garbage()])

    def poke(self, args, payload):
        self.files += 1
        path = os.path.join(self.w.dir, "poke-%d.bin" % (self.files % 4))
        with open(path, "wb") as f:
            f.write(payload)
        p = self.w.spawn([harness.POKE] + args[:2] + [path] + [str(a) for a in args[2:]],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return p

    def finish(self, p, seconds):
        try:
            out, _ = p.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            p.kill()  # by its PID
            out, _ = p.communicate(timeout=10)
            self.errors.append("choreo_poke %s overstayed %ds" % (p.args[1], seconds))
        self.runs += 1
        return p.returncode, out or ""

    def hang_up(self, target, sockets=("rep", "ctl", "pub")):
        """Connects to each socket of the target and hangs up before NNG greets: NNG 1.5 took
        that for its listener's own close and stopped accepting (bus.h, choreo_bus_listeners).
        Returns how many connections were made."""
        made = 0
        for suffix in sockets:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(os.path.join(self.bus, "%s.%s" % (target, suffix)))
                made += 1
            except OSError:  # the host is down
                pass
            finally:
                s.close()
        self.hang_ups += made
        return made

    def run(self):
        evil_pub = "ipc://%s/evil.pub" % self.bus
        evil_rep = "ipc://%s/evil.rep" % self.bus
        limit = int(30 * harness.SLOW)
        k = 0
        while not self.stop_flag.is_set():
            k += 1
            target = NAMES[k % len(NAMES)]
            what = k % 5
            try:
                if what == 0:  # garbage or evil's own frames on a PUB endpoint all discover
                    payload = self.garbage() if self.rng.random() < 0.6 else self.evil_frame()
                    rc, out = self.finish(self.poke(["pub", evil_pub, 3, 1500, 1], payload),
                                          limit)
                    if rc == 0 and re.match(r"sent \d+ to [1-9]", out):
                        self.landed += 1
                elif what == 1:  # a gap from evil, whose FETCH endpoint answers garbage
                    rep = self.poke(["rep", evil_rep, 3], self.garbage())
                    first = self.rng.randrange(1000, 10 ** 6)
                    frame = encode_frame("evil", first, [encode_message(
                        "evil", first, "Noise", data={"x": 0})])
                    rc, out = self.finish(self.poke(["pub", evil_pub, 2, 1500, 1], frame),
                                          limit)
                    if rc == 0 and re.match(r"sent \d+ to [1-9]", out):
                        self.landed += 1
                    self.finish(rep, limit)
                elif what == 2:  # the FETCH socket of a host
                    payload = self.garbage() if self.rng.random() < 0.5 else self.fetch_request()
                    rc, out = self.finish(self.poke(
                        ["req", "ipc://%s/%s.rep" % (self.bus, target), 300], payload), limit)
                    self.landed += rc == 0
                elif what == 3:  # the control socket of a host
                    rc, out = self.finish(self.poke(
                        ["req", "ipc://%s/%s.ctl" % (self.bus, target), 300],
                        self.control_request()), limit)
                    self.landed += rc == 0
                else:  # connect to every socket of a host and hang up at once
                    self.landed += self.hang_up(target)
            except Exception as e:  # reported at the end, never silently
                self.errors.append("%s: %s" % (type(e).__name__, e))
                self.stop_flag.wait(0.5)
            self.stop_flag.wait(self.rng.uniform(0.0, 0.2))


# ---------------------------------------------------------------------------------------------
# Observing the hosts

def status_json(host, timeout=20):
    r = host.cli("status", "--json", timeout=timeout)
    check(r.rc == 0, "status --json of %s failed: %r" % (host.name, r))
    return json.loads(r.out)


def describe(hosts):
    """Every host's status (text) and the last lines of its log: what a failure report needs."""
    out = []
    for h in hosts:
        r = h.cli("status", timeout=10)
        out.append("--- choreo status of %s (rc %s):\n%s%s" % (h.name, r.rc, r.out, r.err))
    return "\n".join(out)


def count_rows(host, table):
    """(rows, distinct order ids, min, max) of a flow table."""
    return tuple(host.query("select count(*), count(distinct order_id), min(order_id), "
                            "max(order_id) from %s" % table)[0])


def converged(hosts, n):
    """None once the whole flow is done and every host has applied every other's whole log;
    otherwise a description of what is still missing."""
    by = {h.name: h for h in hosts}
    # Every host answers before any database is read: see harness.Host.start.
    st = {h.name: status_json(h, timeout=10) for h in hosts}
    missing = []
    done = by["producer"].scalar("select count(*) from done")
    if done < n:
        missing.append("producer heard %d of %d OrderDone" % (done, n))
    for name, s in st.items():
        if s["own_checkpoint"] != s["head"]:
            missing.append("%s applied its own log to %d of %d" % (name, s["own_checkpoint"],
                                                                     s["head"]))
        for p in s["peers"]:
            if p["name"] in st and p["checkpoint"] != st[p["name"]]["head"]:
                missing.append("%s applied %s's log to %d of %d" % (
                    name, p["name"], p["checkpoint"], st[p["name"]]["head"]))
    for key in ("sagas_running", "timeouts_pending", "retries_pending"):
        for name, s in st.items():
            if s[key]:
                missing.append("%s: %s %d" % (name, key, s[key]))
    return "; ".join(missing) or None


def wait_converged(hosts, n, bound, when):
    """Polls converged() for at most `bound` seconds; a host that exits fails at once."""
    t0 = time.monotonic()
    while True:
        for h in hosts:
            if not h.alive():
                raise TestFailure("%s exited by itself (status %s) while catching up:\n%s"
                                  % (h.name, h.proc.returncode, h.log_tail(30)))
        try:
            last = converged(hosts, n)
        except TestFailure as e:  # a status that failed: looked at again
            last = str(e)
        if last is None:
            return
        if time.monotonic() - t0 > bound:
            raise TestFailure("no convergence within %.0fs %s: %s\n%s"
                              % (bound, when, last, describe(hosts)))
        time.sleep(0.2)


def check_exactly_once(host, table, n):
    rows, distinct, lo, hi = count_rows(host, table)
    if (rows, distinct) != (n, n) or (n and (lo, hi) != (1, n)):
        dups = host.query("select order_id, count(*) from %s group by order_id having count(*) > 1 "
                          "order by order_id limit 10" % table)
        raise TestFailure("%s.%s: %d rows for %d distinct orders in [%s, %s], expected orders "
                          "1..%d once each (duplicated: %r)"
                          % (host.name, table, rows, distinct, lo, hi, n, dups))


# ---------------------------------------------------------------------------------------------

def sanitized_binary():
    with open(harness.CHOREO, "rb") as f:
        return b"__asan_init" in f.read()


@suite.test
def kill_9_at_random_under_load_reload_and_garbage(w):
    slow = sanitized_binary()
    kills = KILLS if KILLS is not None else 100
    seed = SEED if SEED is not None else int.from_bytes(os.urandom(4), "big")
    print("    seed %d, %d kills, %d orders/s%s (replay: test_chaos.py CHOREO --seed %d "
          "--kills %d --rate %d)" % (seed, kills, RATE, " (sanitizer build)" if slow else "",
                                     seed, kills, RATE), flush=True)
    rng = random.Random(seed)
    w.log_level = os.environ.get("CHOREO_CHAOS_LOG", "info")

    # RATE orders a second (40 unless --rate says otherwise) until shortly before the last
    # kill: the kills land while orders are in every stage of the flow, and while it drains.
    n = max(200, int(RATE * kills * 0.85 * 0.9))
    versions = {name: 1 for name in NAMES}
    paths = {}
    hosts = []
    for name in NAMES:
        d = w.scripts(name, {name + ".lua": script_text(name, 1)})
        paths[name] = os.path.join(d, name + ".lua")
        hosts.append(w.host(name, d))
    by = {h.name: h for h in hosts}
    harness.wait_until(lambda: all(set(NAMES) - {h.name} <= set(h.status()["peers"])
                                   for h in hosts), 20, "the hosts to find each other")
    r = by["producer"].cli("send", "--id", "chaos-start", "producer", "Start",
                           json.dumps({"n": n, "rate": RATE, "every": 0.1}))
    check(r.rc == 0, "starting the producer: %r" % r)
    hostile = Hostile(w, random.Random(seed + 1))
    hostile.start()

    # The kills.
    t0 = time.monotonic()
    killed = {name: 0 for name in NAMES}
    reloads = 0
    down = set()
    for k in range(kills):
        time.sleep(rng.uniform(0.2, 1.5))
        for h in hosts:
            if h.name not in down and not h.alive():
                raise TestFailure("%s exited by itself (status %s) before kill %d:\n%s"
                                  % (h.name, h.proc.returncode, k + 1, h.log_tail(30)))
        for name in sorted(down):
            by[name].start(wait=False)
        down.clear()
        victim = rng.choice(hosts)
        victim.kill9()
        killed[victim.name] += 1
        if rng.random() < 0.5:
            victim.start(wait=False)
        else:
            down.add(victim.name)
        if rng.random() < 1 / 3:
            name = rng.choice(NAMES)
            versions[name] += 1
            write_script(paths[name], script_text(name, versions[name]))
            reloads += 1
        if (k + 1) % 25 == 0:  # (no database is read here: a host may be opening it)
            print("    %d kills in %.0fs (%s), %d script rewrites"
                  % (k + 1, time.monotonic() - t0,
                     ", ".join("%s %d" % kv for kv in killed.items()), reloads), flush=True)
    chaos_s = time.monotonic() - t0
    for name in sorted(down):
        by[name].start(wait=False)
    print("    %d kills in %.1fs (%s), %d script rewrites" % (
        kills, chaos_s, ", ".join("%s %d" % kv for kv in killed.items()), reloads), flush=True)
    # One more round of hang-ups once every host answers: no restart comes after this one to
    # cure a listener it deafens (as none came after the restart in the stall).
    for h in hosts:
        h.wait_ready(30)
    for h in hosts:
        check_eq(hostile.hang_up(h.name), 3, "connections made to the sockets of %s" % h.name)

    # Convergence, bounded, with the hostile peer still at work: everything applied
    # everywhere, no saga open, nothing pending. A stall shows as a failure here, with every
    # host's status; the bound leaves the checks below time to run before the file's deadline.
    t1 = time.monotonic()
    bound = min((150 if slow else 60) + n / 100, DEADLINE - (t1 - STARTED) - 45)
    wait_converged(hosts, n, bound, "after the last kill")
    print("    converged %.1fs after the last kill (%d orders)" % (time.monotonic() - t1, n),
          flush=True)
    hostile.stop()
    print("    hostile peer: %d pokes and %d hang-ups, %d reached a host" % (
        hostile.runs, hostile.hang_ups, hostile.landed), flush=True)
    check(not hostile.errors, "the hostile peer failed: %s" % hostile.errors[:5])
    if kills >= 20:
        check(hostile.landed >= 5, "the hostile peer reached the hosts only %d times"
              % hostile.landed)

    # Nothing moves any more, and nothing failed. (A listener the peer's last hang-ups
    # deafened takes a few seconds to be repaired: hence the wait.)
    time.sleep(1.0)
    wait_converged(hosts, n, 20, "once the hostile peer stopped")
    for h in hosts:
        s = status_json(h)
        check_eq((s["dead_letters"], s["retries_pending"], s["sagas_running"],
                  s["timeouts_pending"]), (0, 0, 0, 0),
                 "%s: dead letters, retries, running sagas, pending timeouts" % h.name)
        check_eq(s["reload_error"], "", "%s: reload error" % h.name)
    for h in hosts:
        check_eq(h.stop(), 0, "%s's exit status on SIGTERM" % h.name)

    # Exactly once, read from the databases of the stopped hosts.
    for h in hosts:
        check_eq(h.query("select count(*) from choreo_dead_letters")[0][0], 0,
                 "%s: dead letters" % h.name)
        check_eq(h.query("select count(*) from choreo_retries")[0][0], 0, "%s: retries" % h.name)
        failures = re.findall(r".* failed \(attempt \d+\).*", h.log())
        check(not failures, "%s: handler failures: %s" % (h.name, failures[:3]))
    check_exactly_once(by["producer"], "produced", n)
    check_exactly_once(by["producer"], "done", n)
    for table in ("placed", "replied", "settled", "finished"):
        check_exactly_once(by["saga"], table, n)
    check_exactly_once(by["consumer"], "effects", n)
    check_eq(by["saga"].query("select order_id from overdue limit 5"), [],
             "orders whose 90 s watchdog fired")
    check_eq(by["saga"].query("select * from choreo_sagas limit 5"), [], "open saga instances")
    check_eq(by["saga"].query("select name, type, count from choreo_saga_misses"), [],
             "messages that reached a completed saga instance (duplicates)")
    for h in hosts:
        check_eq(h.query("select count(*) from choreo_timeouts")[0][0], 0,
                 "%s: pending timeouts" % h.name)
    # The reloads took: the last rows carry a rewritten version wherever one happened after
    # that host's first rows, and a live host logged reloads.
    reloaded = sum(len(re.findall(r"scripts reloaded", h.log())) for h in hosts)
    print("    %d hot reloads logged; script versions at the end: %s" % (
        reloaded, ", ".join("%s %d" % kv for kv in versions.items())))
    if reloads >= 10:
        check(reloaded > 0, "%d rewrites and not one hot reload" % reloads)
    malformed = {h.name: len(re.findall(r"dropped a malformed", h.log())) for h in hosts}
    print("    malformed input dropped: %s" % malformed)
    if kills >= 20:
        check(sum(malformed.values()) > 0, "the hostile peer's garbage was never seen")


@suite.test
def connections_that_hang_up_at_once_deafen_nothing(w):
    """NNG 1.5 stopped accepting on a listener for good after one connection that hung up
    before it was greeted; the host notices and listens again. Here every socket of a host gets
    such connections, then its peer restarts and must catch up through new ones, and the
    control socket must still answer."""
    a = w.host("a", w.scripts("a", {"a.lua": harness.PRODUCER_LUA}))
    b = w.host("b", w.scripts("b", {"b.lua": harness.consumer_lua()}))
    harness.wait_until(lambda: "a" in b.status()["peers"], 10, "b to find a")
    a.send("a", "Burst", {"n": 10})
    harness.wait_until(lambda: b.scalar("select count(*) from ticks") == 10, 20, "b to get 10")
    hostile = Hostile(w, random.Random(7))
    for _ in range(5):
        check_eq(hostile.hang_up("a"), 3, "connections made to the sockets of a")
        time.sleep(0.05)
    b.kill9()
    b.start()
    # Through a's control socket (a status that goes unanswered is asked again), and a's FETCH
    # socket for b, which connected anew.
    harness.wait_until(lambda: a.cli("status", timeout=5).rc == 0, 30, "a's control socket")
    a.send("a", "Burst", {"from": 11, "n": 10})
    harness.wait_until(lambda: b.scalar("select count(*) from ticks") == 20, 30,
                       "b to catch up from a after its restart")
    check_ticks(b, 20, source="a")
    print("    a listened again %d times" % len(re.findall(r"listening again", a.log())))


@suite.test
def a_pub_socket_hung_up_on_still_reaches_new_subscribers(w):
    """The same hang-ups on the PUB socket alone: a subscriber that connects afterwards (choreo
    tail, which has no FETCH to fall back on) must get live frames."""
    a = w.host("a", w.scripts("a", {"a.lua": harness.PRODUCER_LUA}))
    hostile = Hostile(w, random.Random(11))
    for _ in range(5):
        hostile.hang_up("a", ("pub",))
        time.sleep(0.05)
    rc, lines = w.tail_one("Tick", lambda n: a.send("a", "Burst", {"from": n, "n": 1}), 30)
    check_eq(rc, 0, "tail's exit status (no live frame within 30 s?)")
    check_eq(json.loads(lines[0]).get("type") if lines else None, "Tick", "what tail showed")
    print("    a listened again %d times" % len(re.findall(r"listening again", a.log())))


if __name__ == "__main__":
    suite.main(deadline=DEADLINE)
