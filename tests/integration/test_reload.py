"""Hot reload under load: edits to a consumer's scripts take effect between batches without
losing or duplicating a message; broken edits are rejected with file:line, shown by
`choreo status`, and the old generation keeps handling messages until the file is fixed."""
import os
import re
import threading
import time

import harness
from harness import Suite, check, check_eq, check_ticks, wait_until

suite = Suite("reload")
BURST = 50


class Load:
    """A thread that asks the producer for a burst of BURST ticks every 100 ms."""

    def __init__(self, producer):
        self.producer = producer
        self.sent = 0
        self.errors = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_flag.is_set():
            r = self.producer.cli("send", "producer", "Burst",
                                  '{"from": %d, "n": %d}' % (self.sent + 1, BURST))
            if r.rc == 0:
                self.sent += BURST
            else:
                self.errors.append(repr(r))
            self.stop_flag.wait(0.1)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=60)
        check(not self.errors, "sends failed under load: %s" % self.errors[:3])
        return self.sent


def write_script(path, text):
    """Replaces a script the way careful editors do: write a sibling, then rename over it (a
    name not ending in .lua, so no reload picks up the half-written file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def applied(consumer):
    return consumer.scalar("select count(*) from ticks") or 0


def newest_version(consumer):
    return consumer.scalar("select version from ticks order by n desc limit 1")


def generation(host):
    return host.status()["generation"]


def setup(w):
    consumer_dir = w.scripts("consumer", {"consumer.lua": harness.consumer_lua(version=1)})
    consumer = w.host("consumer", consumer_dir)
    producer = w.host("producer", w.scripts("producer", {"producer.lua": harness.PRODUCER_LUA}))
    wait_until(lambda: "producer" in consumer.status()["peers"], 10, "consumer to find producer")
    return consumer, producer, os.path.join(consumer_dir, "consumer.lua")


def expect_version_soon(consumer, version, what):
    """After a (good or kept) generation change, new rows carry `version`."""
    mark = applied(consumer)
    wait_until(lambda: consumer.scalar("select count(*) from ticks where n > ? and version = ?",
                                       mark, version) >= 2 * BURST,
               20, "%s: new rows with version %s" % (what, version), interval=0.05)


def check_versions_monotonic(consumer):
    versions = [v for (v,) in consumer.query("select version from ticks order by n")]
    for k in range(1, len(versions)):
        if versions[k] < versions[k - 1]:
            raise harness.TestFailure("row %d has version %s after %s: an old generation ran "
                                      "after a newer one" % (k + 1, versions[k], versions[k - 1]))


@suite.test
def reload_under_load_loses_nothing(w):
    consumer, producer, script = setup(w)
    load = Load(producer)
    expect_version_soon(consumer, 1, "before any edit")
    for version in (2, 3, 4, 5):
        gen = generation(consumer)
        write_script(script, harness.consumer_lua(version=version))
        wait_until(lambda: generation(consumer) >= gen + 1, 10,
                   "generation %d after the edit to version %d" % (gen + 1, version))
        expect_version_soon(consumer, version, "after the edit")
        consumer.wait_log(r"scripts reloaded \(generation %d\)" % (gen + 1), 5)
    # An in-place rewrite (open, truncate, write) is picked up the same way.
    gen = generation(consumer)
    with open(script, "w") as f:
        f.write(harness.consumer_lua(version=6))
    wait_until(lambda: generation(consumer) >= gen + 1, 10, "generation after an in-place write")
    expect_version_soon(consumer, 6, "after the in-place edit")
    sent = load.stop()
    wait_until(lambda: applied(consumer) >= sent, 30, "the consumer to apply all %d ticks" % sent,
               interval=0.1)
    time.sleep(0.3)
    check_ticks(consumer, sent)
    check_versions_monotonic(consumer)
    st = consumer.status()
    check(st["generation"] >= 6, "generation after five good edits: %r" % st["generation"])
    check_eq(st["reload error"], "none", "reload error")
    check_eq(st["dead letters"], 0, "dead letters")
    print("    %d ticks applied across 6 generations" % sent)


@suite.test
def broken_edits_are_rejected_and_the_old_code_keeps_running(w):
    consumer, producer, script = setup(w)
    load = Load(producer)
    expect_version_soon(consumer, 1, "before any edit")
    gen = generation(consumer)

    # 1. A syntax error on line 6.
    good = harness.consumer_lua(version=2).splitlines()
    broken = good[:5] + ["this is not lua"] + good[5:]
    write_script(script, "\n".join(broken) + "\n")
    m = consumer.wait_log(r"reload rejected, keeping generation %d: (.*)" % gen, 10)
    check(re.search(r"consumer\.lua:6:", m.group(1)), "the log names file:line: %r" % m.group(0))
    st = consumer.status()
    check(re.search(r"consumer\.lua:6:", st["reload error"]),
          "status shows the reload error with file:line: %r" % st["reload error"])
    check_eq(st["generation"], gen, "generation after a rejected edit")
    expect_version_soon(consumer, 1, "the old generation after a syntax error")

    # 2. An error raised while loading (line 3), after the handlers would have been set up.
    write_script(script, harness.consumer_lua(version=3).replace(
        "local VERSION", 'error("refusing to load")\nlocal VERSION', 1))
    consumer.wait_log(r"reload rejected, keeping generation %d: .*consumer\.lua:3: refusing to load"
                      % gen, 10)
    wait_until(lambda: "refusing to load" in consumer.status()["reload error"], 5,
               "status to show the load-time error")
    expect_version_soon(consumer, 1, "the old generation after a load-time error")

    # 3. A second, broken file next to a good edit: all or nothing.
    write_script(os.path.join(os.path.dirname(script), "extra.lua"), "return (\n")
    write_script(script, harness.consumer_lua(version=5))
    consumer.wait_log(r"reload rejected, keeping generation %d: .*extra\.lua:2:" % gen, 10)
    expect_version_soon(consumer, 1, "the old generation while extra.lua is broken")

    # 4. Fixing it clears the error and the new code takes over.
    write_script(os.path.join(os.path.dirname(script), "extra.lua"), "-- fixed\n")
    wait_until(lambda: generation(consumer) >= gen + 1, 10, "a new generation once fixed")
    check_eq(consumer.status()["reload error"], "none", "reload error once fixed")
    expect_version_soon(consumer, 5, "after the fix")

    sent = load.stop()
    wait_until(lambda: applied(consumer) >= sent, 30, "the consumer to apply all %d ticks" % sent,
               interval=0.1)
    time.sleep(0.3)
    check_ticks(consumer, sent)
    check_versions_monotonic(consumer)
    check_eq(consumer.status()["dead letters"], 0, "dead letters")


@suite.test
def runaway_load_is_cut_off(w):
    """A script whose top level never ends is stopped by the instruction limit and rejected,
    with an error that says so."""
    consumer, producer, script = setup(w)
    load = Load(producer)
    expect_version_soon(consumer, 1, "before any edit")
    gen = generation(consumer)
    write_script(script, harness.consumer_lua(version=2) + "\nwhile true do end\n")
    m = consumer.wait_log(r"reload rejected, keeping generation %d: (.*)" % gen, 20)
    expect_version_soon(consumer, 1, "the old generation after a runaway load")
    check(consumer.alive(), "the consumer survives a runaway load")
    write_script(script, harness.consumer_lua(version=3))
    wait_until(lambda: generation(consumer) >= gen + 1, 10, "a new generation once fixed")
    expect_version_soon(consumer, 3, "after the fix")
    sent = load.stop()
    wait_until(lambda: applied(consumer) >= sent, 30, "the consumer to apply all %d ticks" % sent,
               interval=0.1)
    check_ticks(consumer, sent)
    check(re.search(r"consumer\.lua:\d+: exceeded the instruction limit", m.group(1)),
          "the rejection names file:line and the instruction limit: %r" % m.group(0))


@suite.test
def reload_changes_which_types_are_handled(w):
    """A type that gains a handler in a new generation is handled from then on; one that loses
    its handler is skipped (checkpoint moves on) without errors."""
    consumer, producer, script = setup(w)
    extra = os.path.join(os.path.dirname(script), "greet.lua")
    gen = generation(consumer)
    write_script(extra, r'''
local choreo = require "choreo"
choreo.db:exec("create table if not exists greetings(who text)")
choreo.on("Greet", function(msg, ctx) ctx.db:exec("insert into greetings values (?)", msg.data.who) end)
''')
    wait_until(lambda: generation(consumer) >= gen + 1, 10, "the new file to load")
    consumer.publish("Greet", {"who": "world"})
    wait_until(lambda: consumer.query("select who from greetings") == [("world",)], 10,
               "the new handler to run")
    os.unlink(extra)
    wait_until(lambda: generation(consumer) >= gen + 2, 10, "a reload after the file is removed")
    consumer.publish("Greet", {"who": "again"})
    wait_until(lambda: consumer.checkpoint("consumer") == consumer.head(), 10,
               "the consumer to pass its own Greet")
    check_eq(consumer.query("select who from greetings"), [("world",)], "greetings after removal")
    check_eq(consumer.status()["dead letters"], 0, "dead letters")


@suite.test
def modules_in_subfolders_reload_too(w):
    """An edit to a module a script requires from a subfolder reloads, as does a folder that
    appears with modules in it; the host's own writes to its database do not."""
    svc_dir = w.scripts("svc", {"svc.lua": r'''
local choreo = require "choreo"
local helper = require "lib.deep.helper"
choreo.db:exec("create table if not exists said(word text)")
choreo.on("Say", function(_, ctx) ctx.db:exec("insert into said values (?)", helper.word()) end)
choreo.on("SayMore", function(_, ctx)
  local ok, more = pcall(require, "extra.more")
  ctx.db:exec("insert into said values (?)", ok and more.word() or "none")
end)
'''})
    lib = os.path.join(svc_dir, "lib", "deep")
    os.makedirs(lib)
    write_script(os.path.join(lib, "helper.lua"), 'return { word = function() return "one" end }\n')
    svc = w.host("svc", svc_dir)
    said = lambda: [r[0] for r in svc.query("select word from said order by rowid")]
    svc.publish("Say")
    wait_until(lambda: said() == ["one"], 10, "the first word")

    gen = generation(svc)
    write_script(os.path.join(lib, "helper.lua"), 'return { word = function() return "two" end }\n')
    wait_until(lambda: generation(svc) == gen + 1, 10, "a reload after lib/deep/helper.lua changed")
    svc.publish("Say")
    wait_until(lambda: said() == ["one", "two"], 10, "the edited module's word")

    # A folder that appears is watched, and a module already in it is picked up.
    gen = generation(svc)
    tmp = os.path.join(w.dir, "extra")
    os.makedirs(tmp)
    write_script(os.path.join(tmp, "more.lua"), 'return { word = function() return "more" end }\n')
    os.rename(tmp, os.path.join(svc_dir, "extra"))
    wait_until(lambda: generation(svc) >= gen + 1, 10, "a reload after extra/ appeared")
    svc.publish("SayMore")
    wait_until(lambda: said() == ["one", "two", "more"], 10, "the new folder's module")
    gen = generation(svc)
    write_script(os.path.join(svc_dir, "extra", "more.lua"),
                 'return { word = function() return "again" end }\n')
    wait_until(lambda: generation(svc) >= gen + 1, 10, "a reload after extra/more.lua changed")
    svc.publish("SayMore")
    wait_until(lambda: said() == ["one", "two", "more", "again"], 10, "the edited new module")

    # The database changes with every message: no reload from that.
    gen = generation(svc)
    for _ in range(20):
        svc.publish("Say")
    wait_until(lambda: len(said()) == 24, 10, "twenty more words")
    time.sleep(0.3)
    check_eq(generation(svc), gen, "generation after writes to the database")


if __name__ == "__main__":
    suite.main()
