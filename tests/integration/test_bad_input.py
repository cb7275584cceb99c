"""Bad input: command-line mistakes (exit 2 for usage, 1 for runtime failures, one clear line on
stderr), scripts that cannot load, handler data that cannot cross the wire, and hostile bytes
on every socket a host listens on (fed by choreo_poke): the host counts and logs them, answers
what deserves an answer, never crashes, and keeps delivering normal messages."""
import base64
import json
import os
import random
import re
import subprocess
import time

import harness
from harness import Suite, check, check_eq, encode_frame, encode_message, mp_pack, wait_until

suite = Suite("bad_input")

RECORDER = r'''
local choreo = require "choreo"
choreo.db:exec("create table if not exists got(type text, source text, x integer)")
local function record(msg, ctx)
  local x = type(msg.data) == "table" and msg.data.x or nil
  ctx.db:exec("insert into got values (?, ?, ?)", msg.type, msg.source, x)
end
choreo.on("Ok", record)
choreo.on("Tick", function(msg, ctx) ctx.db:exec("insert into got values ('Tick', ?, ?)", msg.source, msg.data.i) end)
choreo.on("Burst", function(msg, ctx)
  for i = 1, msg.data.n do ctx:publish("Tick", { i = i }) end
end)
'''


def one_line_error(r, pattern, rc):
    check_eq(r.rc, rc, "exit status of %r" % r)
    lines = r.err.strip().splitlines()
    check(len(lines) == 1 and lines[0].startswith("choreo: "),
          "one line on stderr starting 'choreo: ': %r" % r)
    check(re.search(pattern, lines[0]), "stderr matches %r: %r" % (pattern, lines[0]))
    check_eq(r.out, "", "stdout of a failed command")


@suite.test
def command_line_errors(w):
    good = w.scripts("svc", {"svc.lua": RECORDER})
    svc = w.host("svc", good)
    other = w.host("svc2", good)
    empty_bus = os.path.join(w.dir, "empty-bus")
    a_file = os.path.join(good, "svc.lua")
    b = ["--bus", w.bus]
    bh = b + ["--host", "svc"]
    deep = "[" * 40 + "]" * 40
    spec_dir = os.path.join(w.dir, "specs")
    os.makedirs(os.path.join(spec_dir, "spec"))
    cases = [
        # (args, exit status, stderr pattern)
        (["frobnicate"], 2, r"unknown command 'frobnicate'"),
        (["run", good, "--frob", "x"] + b, 2, r"unknown option '--frob'"),
        (["run", good, "--name"], 2, r"--name needs a value"),
        (["run"] + b, 2, r"run needs the scripts directory"),
        (["run", good, good] + b, 2, r"run takes one directory"),
        (["run", good, "--instructions", "0"] + b, 2, r"--instructions needs a positive integer"),
        (["run", good, "--memory", "lots"] + b, 2, r"--memory needs a positive integer"),
        (["run", good, "--name", "bad/name"] + b, 2, r"invalid name 'bad/name'"),
        (["run", good, "--cpu", "x"] + b, 2, r"--cpu needs a CPU number, got 'x'"),
        (["run", good, "--cpu", "-1"] + b, 2, r"--cpu needs a CPU number, got '-1'"),
        (["run", good, "--cpu", "99999"] + b, 2, r"--cpu needs a CPU number"),
        (["run", good, "--cpu", "1000"] + b, 2, r"--cpu 1000: no such CPU available"),
        (["run", good, "--bus"], 2, r"--bus needs a value"),
        (["run", os.path.join(w.dir, "no-such-dir")] + b, 1, r"no-such-dir: no such directory"),
        (["run", a_file] + b, 1, r"svc\.lua: no such directory"),
        (["run", good, "--name", "svc"] + b, 1, r"another host with this name"),
        (["run", good, "--name", "x1", "--listen", "tcp://127.0.0.1"] + b, 2, r"--listen"),
        (["run", good, "--name", "x1", "--listen", "foo://bar:7"] + b, 2, r"--listen foo://bar:7"),
        (["run", good, "--name", "x2", "--peer", "nonsense"] + b, 2, r"--peer nonsense"),
        (["run", good, "--max-message", "100"] + b, 2, r"--max-message must be between"),
        (["run", good, "--page-size", "1000"] + b, 2, r"--page-size must be a power of two"),
        (["run", good, "--page-size", "131072"] + b, 2, r"--page-size must be a power of two"),
        (["run", good, "--page-size", "256"] + b, 2, r"--page-size must be a power of two"),
        (["run", good, "--page-size", "big"] + b, 2, r"--page-size needs a positive integer"),
        (["status", "--bus", os.path.join(w.dir, "nope")], 1, r"no host is running on bus .*no such"),
        (["tail", "--bus", os.path.join(w.dir, "nope")], 1, r"no host is running on bus .*no such"),
        (["tail"] + bh[:2] + ["--host", "nosuch"], 1, r"no host named 'nosuch'"),
        (["publish"] + bh + ["T", "[1.5e400]"], 2, r"number out of range: 1\.5e400"),
        (["publish"] + bh + ["T", "@" + os.path.join(w.dir, "missing.json")], 2,
         r"missing\.json: No such file"),
        (["status", "--bus", w.bus, "--host", "ghost"], 1, r"no host named 'ghost'"),
        (["status", "--bus", empty_bus], 1, r"no host is running on bus"),
        (["status", "--bus", w.bus], 2, r"several hosts on bus .*pick one with --host"),
        (["status", "--bus", w.bus, "--host", "../etc"], 2, r"invalid host name"),
        (["status"] + bh + ["extra"], 2, r"status takes only --json"),
        (["publish"] + bh, 2, r"usage: choreo publish"),
        (["publish"] + bh + ["T", "{}", "extra"], 2, r"usage: choreo publish"),
        (["publish"] + bh + ["--frob", "T"], 2, r"unknown option '--frob'"),
        (["publish"] + bh + ["T", "{bad json"], 2, r"JSON|json"),
        (["publish"] + bh + ["T", deep], 2, r"nesting deeper than"),
        (["publish", "--bus", w.bus, "--host", "ghost", "T", "{bad"], 2, r"JSON|json"),
        (["send"] + bh + ["svc"], 2, r"usage: choreo send"),
        (["send"] + bh, 2, r"usage: choreo send"),
        (["dead"] + bh, 2, r"usage: choreo dead"),
        (["dead"] + bh + ["frob"], 2, r"usage: choreo dead"),
        (["dead"] + bh + ["retry", "abc"], 2, r"must be a positive integer"),
        (["dead"] + bh + ["drop", "-3"], 2, r"must be a positive integer"),
        (["dead"] + bh + ["drop", "42"], 1, r"no dead letter with id 42"),
        (["tail"] + b + ["--count", "0"], 2, r"--count needs a positive integer"),
        (["tail"] + b + ["--frob"], 2, r"unknown option '--frob'"),
        (["tail"] + b + ["A", "B"], 2, r"one pattern"),
        (["tail"] + b + ["--format", "xml"], 2, r"--format is json or text, got 'xml'"),
        (["tail"] + b + ["--source", "bad/name"], 2, r"invalid source name 'bad/name'"),
        (["tail"] + b + ["--correlation"], 2, r"--correlation needs a value"),
        (["test", spec_dir, "--bogus"], 2, r"unknown/bad flag: --bogus"),
    ]
    head = svc.head()
    for args, rc, pattern in cases:
        with w.step("choreo " + " ".join(a.replace(w.dir, "$TMP") for a in args)[:90]):
            one_line_error(w.cli(*args, timeout=20), pattern, rc)
    with w.step("a destination that is not a host name"):
        r = w.cli("send", *bh, "bad/name", "T")
        check(r.rc in (1, 2), "exit status: %r" % r)
        one_line_error(r, r"invalid destination 'bad/name'", r.rc)
    with w.step("no arguments prints the usage, exit 2"):
        r = w.cli()
        check_eq(r.rc, 2, "exit status")
        check("usage: choreo" in r.err, "usage on stderr: %r" % r)
    with w.step("--version and --help"):
        r = w.cli("--version")
        check(r.rc == 0 and re.match(r"choreo \d+\.\d+", r.out), "--version: %r" % r)
        r = w.cli("--help")
        check(r.rc == 0 and "usage: choreo" in r.out, "--help: %r" % r)
        check("tail    [--host NAME] [--count N]" in r.out, "the usage shows tail --count: %r" % r)
        for sub in ("run", "test", "publish", "send", "tail", "status", "dead", "sagas"):
            for args in ([sub, "--help"], [sub, "-h"], ["help", sub]):
                r = w.cli(*args)
                check(r.rc == 0 and r.out.startswith("usage: choreo " + sub), "%r: %r" % (args, r))
        one_line_error(w.cli("help", "frob"), r"unknown command 'frob'", 2)
    with w.step("a missing bus directory is not created by a client"):
        check(not os.path.exists(os.path.join(w.dir, "nope")), "the bus directory was created")
    with w.step("JSON from a file (@FILE)"):
        path = os.path.join(w.dir, "big.json")
        with open(path, "w") as f:
            json.dump({"x": 5, "pad": "y" * 300000}, f)
        r = w.cli("publish", *bh, "Rec", "@" + path)
        check(r.rc == 0 and r.out.startswith("published svc/"), "publish @FILE: %r" % r)
        head += 1
    with w.step("rejected commands appended nothing"):
        check_eq(svc.head(), head, "svc's log head")
        check(svc.alive() and other.alive(), "hosts alive")
        check_eq(sorted(os.listdir(w.bus)), ["svc.ctl", "svc.pub", "svc.rep", "svc2.ctl",
                                             "svc2.pub", "svc2.rep"],
                 "sockets on the bus (failed starts leave none behind)")


@suite.test
def a_page_size_applies_to_a_new_database(w):
    """--page-size sets the pages of the database a host creates (16 KiB without it); a
    database already there keeps its own, and the host says so instead of ignoring the flag."""
    scripts = w.scripts("svc", {"svc.lua": RECORDER})
    plain = w.host("plain", scripts)
    check_eq(plain.scalar("pragma page_size"), 16384, "page size by default")
    svc = w.host("svc", scripts, extra=["--page-size", "4096"])
    check_eq(svc.scalar("pragma page_size"), 4096, "page size asked for")
    svc.send("svc", "Ok", {"x": 1})
    wait_until(lambda: svc.scalar("select count(*) from got") == 1, 10, "the first message")
    svc.stop()
    svc.extra = ["--page-size", "8192"]
    svc.start()
    svc.send("svc", "Ok", {"x": 2})
    wait_until(lambda: svc.scalar("select count(*) from got") == 2, 10, "the second message")
    check_eq(svc.scalar("pragma page_size"), 4096, "page size kept")
    check(re.search(r"svc\.db was created with 4096-byte pages and keeps them", svc.log(False)),
          "the flag's effect is told: %s" % svc.log_tail())


@suite.test
def messages_no_handler_takes_are_counted_and_named(w):
    """A command nobody handles used to vanish without a word: now the first of each type is
    logged at warn, and `choreo status` counts them per type (events too)."""
    svc = w.host("svc", w.scripts("svc", {"svc.lua": RECORDER}))
    for _ in range(2):
        svc.send("svc", "Nope", {"x": 1})
    svc.publish("Unheard", {"x": 2})
    svc.send("svc", "Ok", {"x": 3})
    wait_until(lambda: svc.scalar("select count(*) from got where type = 'Ok'") == 1, 10, "Ok")
    status = svc.cli("status")
    check(status.rc == 0, "status: %r" % status)
    check(re.search(r"unhandled\s+Nope: 2 ", status.out), "Nope counted twice: %r" % status.out)
    check(re.search(r"unhandled\s+Unheard: 1 ", status.out), "Unheard counted: %r" % status.out)
    check(not re.search(r"unhandled\s+Ok", status.out), "Ok is handled: %r" % status.out)
    check_eq(len(re.findall(r"no handler takes command Nope", svc.log())), 1, "warnings for Nope")
    check_eq(len(re.findall(r"no handler takes \S+ Unheard", svc.log())), 0,
             "warnings for an event (events go to whoever wants them)")


@suite.test
def a_publish_with_an_id_appends_once(w):
    """A client that retries (say after "host did not answer") must not append twice: with
    --id KEY the second publish appends nothing and answers the first id."""
    svc = w.host("svc", w.scripts("svc", {"svc.lua": RECORDER}))
    head = svc.head()
    first = svc.cli("send", "--id", "order-7", "svc", "Ok", '{"x": 7}')
    again = svc.cli("send", "--id", "order-7", "svc", "Ok", '{"x": 7}')
    check(first.rc == 0 and again.rc == 0, "both sends: %r %r" % (first, again))
    check_eq(again.out.split()[1], first.out.split()[1], "the id answered the second time")
    check("nothing appended" in again.out, "the second says it appended nothing: %r" % again)
    check_eq(svc.head(), head + 1, "log head")
    other = svc.cli("send", "--id", "order-8", "svc", "Ok", '{"x": 8}')
    check(other.rc == 0 and "nothing appended" not in other.out, "another key: %r" % other)
    plain = [svc.cli("send", "svc", "Ok", '{"x": 9}') for _ in range(2)]
    check(all(r.rc == 0 for r in plain), "sends without --id: %r" % plain)
    check_eq(svc.head(), head + 4, "log head: sends without --id append each time")
    wait_until(lambda: svc.scalar("select count(*) from got where type = 'Ok'") == 4, 10, "Oks")
    check_eq(svc.scalar("select count(*) from got where x = 7"), 1, "order 7 handled once")
    one_line_error(svc.cli("send", "--id", "", "svc", "Ok"), r"--id needs a key", 2)


@suite.test
def a_command_to_a_service_nobody_knows_warns(w):
    svc = w.host("svc", w.scripts("svc", {"svc.lua": RECORDER}))
    w.host("other", w.scripts("other", {"other.lua": RECORDER}))
    wait_until(lambda: "other" in svc.status()["peers"], 10, "svc to find other")
    head = svc.head()
    r = svc.cli("send", "ghost", "Ok", '{"x": 1}')
    check(r.rc == 0 and r.out.startswith("sent svc/"), "appended all the same: %r" % r)
    check(re.search(r"warning: no host named 'ghost'", r.err), "the warning: %r" % r)
    for to in ("other", "svc"):
        r = svc.cli("send", to, "Ok", '{"x": 2}')
        check(r.rc == 0 and r.err == "", "no warning for a known host (%s): %r" % (to, r))
    check_eq(svc.head(), head + 3, "log head")


@suite.test
def a_directory_without_scripts_is_named_in_the_log(w):
    empty = os.path.join(w.dir, "empty")
    os.makedirs(empty)
    host = w.host("empty", empty)
    host.wait_log(r"holds no \*\.lua script", 10)
    check(host.alive(), "the host runs all the same (scripts may come with a reload)")


@suite.test
def scripts_that_cannot_load(w):
    syntax = w.scripts("syntax", {"a.lua": "-- fine\n", "bad.lua": "local x = 1\n\nlocal = 2\n"})
    r = w.cli("run", syntax, "--bus", w.bus, "--data", os.path.join(w.dir, "s.db"), timeout=20)
    one_line_error(r, r"bad\.lua:3:", 1)
    load = w.scripts("load", {"bad.lua": 'local choreo = require "choreo"\nerror("nope")\n'})
    r = w.cli("run", load, "--bus", w.bus, "--data", os.path.join(w.dir, "l.db"), timeout=20)
    one_line_error(r, r"bad\.lua:2: nope", 1)
    sql = w.scripts("sql", {"bad.lua": 'local choreo = require "choreo"\n'
                                       'choreo.db:exec("create tabel oops")\n'})
    r = w.cli("run", sql, "--bus", w.bus, "--data", os.path.join(w.dir, "q.db"), timeout=20)
    one_line_error(r, r"bad\.lua:2: .*SQL", 1)
    spin = w.scripts("spin", {"spin.lua": "while true do end\n"})
    r = w.cli("run", spin, "--bus", w.bus, "--data", os.path.join(w.dir, "p.db"),
              "--instructions", "1000000", timeout=20)
    one_line_error(r, r"spin\.lua:1:", 1)
    check_eq(os.listdir(w.bus), [], "sockets left on the bus by failed starts")


UNSENDABLE = r'''
local choreo = require "choreo"
choreo.db:exec("create table if not exists got(type text, x integer)")
choreo.on("Go", function(msg, ctx)  -- one transaction appends every case, so they run together
  for _, t in ipairs({ "Function", "Cycle", "Deep", "Userdata", "TableKey", "Exit", "Ok" }) do
    ctx:send("svc", t, { x = 1 })
  end
end)
choreo.on("Function", function(msg, ctx)
  ctx:publish("Before", { x = 1 })   -- rolled back with the failure
  ctx:publish("X", { f = function() end })
end)
choreo.on("Cycle", function(msg, ctx) local t = {}; t.self = t; ctx:publish("X", t) end)
choreo.on("Deep", function(msg, ctx)
  local t = {}
  for _ = 1, 100 do t = { t } end
  ctx:send("svc", "X", t)
end)
choreo.on("Userdata", function(msg, ctx) ctx:publish("X", { out = io.stdout }) end)
choreo.on("TableKey", function(msg, ctx) ctx:publish("X", { [{}] = 1 }) end)
choreo.on("Exit", function(msg, ctx) os.exit(3) end)
choreo.on("Ok", function(msg, ctx) ctx.db:exec("insert into got values ('Ok', 1)") end)
'''


@suite.test
def data_that_cannot_cross_the_wire(w):
    svc = w.host("svc", w.scripts("svc", {"svc.lua": UNSENDABLE}))
    svc.publish("Go")
    expected = {
        "Function": r"ctx:publish: cannot send a value of type function",
        "Cycle": r"ctx:publish: cannot send a table nested deeper than \d+ levels \(or a cycle\)",
        "Deep": r"ctx:send: cannot send a table nested deeper than \d+ levels",
        "Userdata": r"ctx:publish: cannot send a value of type userdata",
        "TableKey": r"ctx:publish: cannot send a table key of type table",
        "Exit": r"os\.exit is not allowed",
    }
    wait_until(lambda: svc.scalar("select count(*) from got") == 1, 10, "the Ok after the bad ones")
    for type_, pattern in expected.items():
        with w.step("%s fails with a clear error" % type_):
            m = svc.wait_log(r"%s svc/\d+ failed \(attempt 3\), retrying in 1s: (.*)" % type_, 10)
            check(re.search(r"svc\.lua:\d+: " + pattern, m.group(1)),
                  "error %r should match %r" % (m.group(1), pattern))
    with w.step("nothing of the failed handlers was appended"):
        check_eq(svc.scalar("select count(*) from choreo_log where type in ('X', 'Before')"), 0,
                 "messages appended by failed handlers")
        check(svc.alive(), "svc keeps running (os.exit did not end it)")


@suite.test
def binary_strings_reach_tail_as_json(w):
    svc = w.host("svc", w.scripts("svc", {"svc.lua": r'''
local choreo = require "choreo"
choreo.on("Make", function(msg, ctx)
  ctx:publish("Bin", { s = "\0\255\254\"\\\n" .. string.rep("\1", 40), t = "a\0b\n",
                       n = msg.data.n })
end)
'''}))
    rc, lines = w.tail_one("Bin", lambda n: svc.publish("Make", {"n": n}))
    check_eq(rc, 0, "tail's exit status")
    check_eq(len(lines), 1, "lines from tail: %r" % lines)
    event = json.loads(lines[0])
    check(isinstance(event.get("data"), dict) and event["data"].get("n", 0) >= 1,
          "tail's JSON carries the data: %r" % event)
    # Bytes that are not UTF-8 come as base64, text keeps its NUL bytes.
    raw = b"\0\xff\xfe\"\\\n" + b"\1" * 40
    check_eq(event["data"].get("s"), {"$base64": base64.b64encode(raw).decode()}, "binary string")
    check_eq(event["data"].get("t"), "a\0b\n", "text with a NUL byte")


# ---------------------------------------------------------------------------------------------
# Hostile bytes on the sockets

def payloads():
    """name -> bytes that must not be accepted as a frame."""
    rnd = random.Random(20240601)
    deep_data = b"\x91" * 10000 + b"\x01"
    good1 = encode_message("evil", 1, "Tick", data={"i": 1})
    good2 = encode_message("evil", 2, "Tick", data={"i": 2})
    header = mp_pack([1, "evil", 1, 1, 1])
    return {
        "random bytes": bytes(rnd.getrandbits(8) for _ in range(4096)),
        "empty": b"",
        "array32 claiming 4 billion elements": b"\xdd\xff\xff\xff\xff" + b"\x01" * 16,
        "map32 claiming 4 billion pairs": b"\xdf\xff\xff\xff\xff" + b"\x01" * 16,
        "str32 claiming 4 GiB": b"\xdb\xff\xff\xff\xffabc",
        "bin32 claiming 4 GiB": b"\xc6\xff\xff\xff\xffabc",
        "10,000-deep nested arrays": deep_data,
        "frame with 10,000-deep data": header + b"\x86" + b"".join(
            mp_pack(k) + mp_pack(v) for k, v in (("id", "evil/1"), ("source", "evil"),
                                                  ("type", "Tick"), ("kind", "event"), ("seq", 1)))
            + mp_pack("data") + deep_data,
        "frame truncated in its body": encode_frame("evil", 1, [good1, good2])[:-7],
        "frame with one byte missing": encode_frame("evil", 1, [good1])[:-1],
        "frame claiming 2^32-1 messages": mp_pack([1, "evil", 1, 2 ** 32 - 1, 1]) + good1,
        "frame whose seq does not follow": encode_frame("evil", 1, [good2]),
        "frame with first seq near 2^63": mp_pack([1, "evil", 2 ** 63 - 1, 2, 2 ** 63 - 1]) + good1 + good2,
        "frame with an unknown version": mp_pack([99, "evil", 1, 1, 1]) + good1,
        "frame with a 200-byte source": encode_frame("e" * 200, 1, [encode_message("e" * 200, 1, "Tick", data={"i": 1})]),
        "frame with a message that is not a map": mp_pack([1, "evil", 1, 1, 1]) + mp_pack([1, 2, 3]),
        "frame with trailing garbage": encode_frame("evil", 1, [good1]) + b"\xc1",
        "reserved byte 0xc1": b"\xc1" * 64,
    }


def poke(w, mode, url, data, *extra):
    check(harness.POKE, "choreo_poke is not built (set CHOREO_POKE)")
    path = os.path.join(w.dir, "payload.bin")
    with open(path, "wb") as f:
        f.write(data)
    r = subprocess.run([harness.POKE, mode, url, path] + [str(e) for e in extra],
                       capture_output=True, text=True, timeout=30 * harness.SLOW)
    return r


def bad_frames(host):
    return host.status()["bad frames"]


def reply_json(poke_result):
    m = re.match(r"reply \d+ bytes: (.*)$", poke_result.stdout.strip())
    check(m, "an answer was expected: %r" % poke_result.stdout)
    return json.loads(m.group(1).rstrip("."))


@suite.test
def hostile_frames_from_a_peer(w):
    victim = w.host("victim", w.scripts("victim", {"victim.lua": RECORDER}))
    producer = w.host("producer", w.scripts("producer", {"producer.lua": RECORDER}))
    url = "ipc://%s/evil.pub" % w.bus
    for name, data in payloads().items():
        with w.step("PUB: " + name):
            before = bad_frames(victim)
            # Both hosts on the bus subscribe; the victim must be one of them.
            r = poke(w, "pub", url, data, 3, 5000, 2)
            check_eq((r.returncode, r.stdout.strip()), (0, "sent 3 to 2 subscribers"),
                     "choreo_poke: %s" % r.stderr.strip())
            check(victim.alive(), "the victim is alive")
            wait_until(lambda: bad_frames(victim) > before, 5, "the bad frame to be counted")
    with w.step("a valid frame from the same peer is applied (the path works)"):
        r = poke(w, "pub", url, encode_frame("evil", 1, [encode_message("evil", 1, "Tick", data={"i": 7})]),
                 3, 5000, 2)
        check_eq(r.returncode, 0, "choreo_poke: %r" % r)
        wait_until(lambda: victim.query("select source, x from got where type = 'Tick'")
                   == [("evil", 7)], 10, "victim to apply evil's Tick once")
    with w.step("the victim logs the bad frames and keeps delivering"):
        check(victim.alive(), "the victim is alive")
        check("dropped a malformed frame" in victim.log(), "the log mentions the bad frames")
        check("dropped a frame: its frame version 99 is newer than this host reads (3); upgrade "
              "this host" in victim.log(), "the log tells a newer version from garbage")
        st = victim.status()
        print("    bad frames counted: %d" % st["bad frames"])
        check(st["bad frames"] >= len(payloads()), "status counts the bad frames: %r" % st)
        producer.send("producer", "Burst", {"n": 100})
        victim.send("victim", "Ok", {"x": 1})
        wait_until(lambda: victim.scalar("select count(*) from got where source = 'producer'") == 100
                   and victim.scalar("select count(*) from got where type = 'Ok'") == 1, 20,
                   "normal messages to be delivered")


@suite.test
def hostile_fetch_answers(w):
    """A peer whose FETCH endpoint answers garbage."""
    victim = w.host("victim", w.scripts("victim", {"victim.lua": RECORDER}))
    rep = w.spawn([harness.POKE or "false", "rep", "ipc://%s/evil.rep" % w.bus,
                   _write(w, "answer.bin", b"\xdd\xff\xff\xff\xff"), str(int(30 * harness.SLOW))],
                  stdout=subprocess.DEVNULL)
    before = bad_frames(victim)
    # A PUB endpoint makes the victim discover "evil" and ask its FETCH endpoint.
    pub = w.spawn([harness.POKE or "false", "pub", "ipc://%s/evil.pub" % w.bus,
                   _write(w, "nothing.bin", b"\xc1"), "1"], stdout=subprocess.DEVNULL)
    pub.wait(timeout=30 * harness.SLOW)
    victim.wait_log(r"dropped a malformed FETCH answer from ipc://.*/evil\.pub", 10)
    rep.terminate()
    check(bad_frames(victim) > before, "bad FETCH answers are counted")
    check(victim.alive(), "the victim is alive")
    victim.send("victim", "Ok", {"x": 1})
    wait_until(lambda: victim.scalar("select count(*) from got where type = 'Ok'") == 1, 10,
               "a normal message to be delivered")


def _write(w, name, data):
    path = os.path.join(w.dir, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@suite.test
def hostile_fetch_requests(w):
    victim = w.host("victim", w.scripts("victim", {"victim.lua": RECORDER}))
    victim.send("victim", "Ok", {"x": 1})
    wait_until(lambda: victim.head() == 1, 10, "one row in the victim's log")
    url = "ipc://%s/victim.rep" % w.bus
    requests = dict(payloads())
    requests.update({
        "fetch without an argument": mp_pack(["fetch"]),
        "fetch with a string": mp_pack(["fetch", "0"]),
        "fetch with three elements": mp_pack(["fetch", 0, 1]),
        "fetch, then trailing bytes": mp_pack(["fetch", 0]) + b"\x00",
        "another op": mp_pack(["fetcH", 0]),
    })
    for name, data in requests.items():
        with w.step("FETCH: " + name):
            r = poke(w, "req", url, data, 300)
            check_eq((r.returncode, r.stdout.strip()), (0, "no reply"), "choreo_poke: %s" % r.stderr)
            check(victim.alive(), "the victim is alive")
    for name, after, first, count in (("after 0", 0, 1, 1), ("after -1 (name and head)", -1, 2, 0),
                                      ("after 2^64-1", 2 ** 64 - 1, 2, 0), ("after 5", 5, 6, 0)):
        with w.step("FETCH %s is answered sanely" % name):
            r = poke(w, "req", url, mp_pack(["fetch", after]), 2000)
            check_eq(r.returncode, 0, "choreo_poke: %r" % r)
            check(victim.alive(), "the victim is alive after %r" % r.stdout)
            if r.stdout.strip() != "no reply":
                check(re.match(r"reply \d+ bytes: .*victim", r.stdout), "the answer: %r" % r.stdout)
            elif first is not None:
                raise harness.TestFailure("no answer to a valid request")
    with w.step("the victim keeps working"):
        victim.wait_log(r"dropped a malformed FETCH request", 5)
        victim.send("victim", "Ok", {"x": 2})
        wait_until(lambda: victim.scalar("select count(*) from got where type = 'Ok'") == 2, 10,
                   "a normal message to be delivered")
    with w.step("FETCH after 2^63-1 (the largest seq) is survived"):
        r = poke(w, "req", url, mp_pack(["fetch", 2 ** 63 - 1]), 2000)
        check_eq(r.returncode, 0, "choreo_poke: %r" % r)
        time.sleep(0.2)
        check(victim.alive(), "the victim is alive after %r" % r.stdout)
        check(r.stdout.strip() == "no reply" or re.match(r"reply \d+ bytes: .*victim", r.stdout),
              "the answer: %r" % r.stdout)
        check_eq(victim.cli("status").rc, 0, "status after FETCH 2^63-1")


@suite.test
def hostile_control_requests(w):
    victim = w.host("victim", w.scripts("victim", {"victim.lua": RECORDER}))
    url = "ipc://%s/victim.ctl" % w.bus
    deep = "[" * 10000 + "]" * 10000
    requests = dict(payloads())
    requests.update({
        "JSON nested 10,000 deep": deep.encode(),
        "JSON without a NUL or an end": b'{"op": "status"',
        "JSON that is not an object": b'["op", "status"]\0',
        "unknown op": b'{"op": "format-disk"}\0',
        "op of the wrong type": b'{"op": 7}\0',
        "publish without a type": b'{"op": "publish"}\0',
        "publish with an empty type": b'{"op": "publish", "type": ""}\0',
        "publish with data that is not JSON": b'{"op": "publish", "type": "T", "data": "{x"}\0',
        "publish with data nested 10,000 deep": json.dumps({"op": "publish", "type": "T",
                                                            "data": deep}).encode() + b"\0",
        "publish with data nested 40 deep": json.dumps({"op": "publish", "type": "T",
                                                        "data": "[" * 40 + "]" * 40}).encode(),
        "send without a destination": b'{"op": "send", "type": "T"}',
        "send to a path": b'{"op": "send", "type": "T", "to": "../../etc"}',
        "dead with an unknown action": b'{"op": "dead", "action": "burn", "id": 1}',
        "dead drop without an id": b'{"op": "dead", "action": "drop"}',
        "dead drop with a huge id": b'{"op": "dead", "action": "drop", "id": 1e300}',
        "dead drop with a negative id": b'{"op": "dead", "action": "drop", "id": -1}',
        "dead retry with a string id": b'{"op": "dead", "action": "retry", "id": "1"}',
    })
    for name, data in requests.items():
        with w.step("control: " + name):
            r = poke(w, "req", url, data, 2000)
            check_eq(r.returncode, 0, "choreo_poke: %r" % r)
            answer = reply_json(r)
            check(answer.get("ok") is False and isinstance(answer.get("error"), str)
                  and answer["error"], "an error answer: %r" % answer)
            check(victim.alive(), "the victim is alive")
    with w.step("control: more than the receive limit (17 MiB)"):
        r = poke(w, "req", url, b"{" * (17 << 20), 2000)
        check_eq((r.returncode, r.stdout.strip()), (0, "no reply"), "choreo_poke")
        check(victim.alive(), "the victim is alive")
    with w.step("control: nothing was appended, and the socket still serves"):
        check_eq(victim.head(), 0, "the victim's log head")
        r = poke(w, "req", url, b'{"op": "status"}', 2000)
        check_eq(reply_json(r).get("name"), "victim", "status through the raw socket")
        victim.send("victim", "Ok", {"x": 3})
        wait_until(lambda: victim.scalar("select count(*) from got where type = 'Ok'") == 1, 10,
                   "a normal message to be delivered")
    with w.step("control: data as a JSON value, integers exact past 2^53, numbers before it"):
        head = victim.head()
        big = 2 ** 53 + 1
        r = poke(w, "req", url, b'{"op": "publish", "type": "Ok", "pad": [1, 2.5, -3], '
                 b'"data": {"x": %d}}' % big, 2000)
        check_eq(reply_json(r).get("ok"), True, "the answer to a value: %r" % r)
        r = poke(w, "req", url, b'{"op": "publish", "type": "Ok", "n": 7, "batch": '
                 b'[{"x": %d}, "{\\"x\\": 12}", {"x": -%d}]}' % (big + 2, big + 4), 2000)
        check_eq(reply_json(r).get("ok"), True, "the answer to a batch of both forms: %r" % r)
        check_eq(victim.head() - head, 4, "messages appended")
        wait_until(lambda: victim.scalar("select count(*) from got where type = 'Ok'") == 5, 10,
                   "the four to be delivered")
        got = [row[0] for row in victim.query("select x from got where type = 'Ok' order by rowid")]
        check_eq(got[1:], [big, big + 2, 12, -(big + 4)], "the data's x as delivered")
    for name, request, error in (
            ("a batch item that is not JSON", b'{"op": "publish", "type": "Ok", '
             b'"batch": [{"x": 1}, "{bad"]}', r"^batch item 2: invalid JSON at offset \d+$"),
            ("a number JSON cannot say", b'{"op": "publish", "type": "Ok", "data": {"x": 1e400}}',
             r"^data: number out of range: 1e400$"),
            ("data nested 40 deep", b'{"op": "publish", "type": "Ok", "data": %s}'
             % (b"[" * 40 + b"]" * 40), r"^data: nesting deeper than 30$")):
        with w.step("control: %s is refused, nothing appended" % name):
            head = victim.head()
            answer = reply_json(poke(w, "req", url, request, 2000))
            check(answer.get("ok") is False and re.match(error, answer.get("error", "")),
                  "the answer: %r" % answer)
            check_eq(victim.head() - head, 0, "messages appended")


@suite.test
def frames_claiming_the_hosts_own_name_are_ignored(w):
    """Only a host writes its own log: a frame from outside that claims the host's name must
    not be applied, or the host skips its own messages with the same seq."""
    victim = w.host("victim", w.scripts("victim", {"victim.lua": RECORDER}))
    forged = encode_frame("victim", 1, [encode_message("victim", 1, "Ok", kind="command",
                                                       to="victim", data={"x": 666})])
    r = poke(w, "pub", "ipc://%s/evil.pub" % w.bus, forged, 3, 5000, 1)
    check_eq(r.returncode, 0, "choreo_poke: %r" % r)
    time.sleep(0.5)
    victim.send("victim", "Ok", {"x": 1})
    wait_until(lambda: victim.checkpoint("victim") >= 1 and victim.head() == 1, 10,
               "the victim to pass its own seq 1")
    time.sleep(0.3)
    check_eq(victim.query("select x from got where type = 'Ok'"), [(1,)],
             "Ok commands the victim applied (666 is the forged one, 1 its own)")


if __name__ == "__main__":
    suite.main()
