"""Event-sourced aggregates on real hosts: commands from another host over the bus, stream
events that other hosts react to like any event, exactly-once appends across kill -9, streams
that retention leaves alone, snapshots dropped when the code that folds them changes, and the
CLI's --subject/--expect and `choreo stream`."""
import json
import os
import random
import time

import harness
from harness import Suite, check, check_eq, wait_until

suite = Suite("aggregates")

BANK = """
local choreo = require "choreo"
choreo.aggregate("Account", {
  initial = function() return { balance = 0, seen = {} } end,
  decide = {
    Deposit = function(state, cmd)
      return { { type = "Deposited", data = { amount = cmd.data.amount, n = cmd.data.n } } }
    end,
    Withdraw = function(state, cmd)
      if state.balance < cmd.data.amount then return nil, "insufficient funds" end
      return { { type = "Withdrawn", data = { amount = cmd.data.amount } } }
    end,
  },
  evolve = {
    Deposited = function(state, e) state.balance = state.balance + e.data.amount%(factor)s end,
    Withdrawn = function(state, e) state.balance = state.balance - e.data.amount end,
  },
  snapshot_every = 7,
})
"""

# Sends its Deposit commands to bank, and notes the replies that come back.
TELLER = """
local choreo = require "choreo"
choreo.db:exec("create table if not exists rejected(reason text, stream text, version integer)")
choreo.on("Start", function(msg, ctx)
  for n = msg.data.from, msg.data.to do
    ctx:send("bank", "Deposit", { amount = n, n = n }, { subject = "Account/" .. (n % 5) })
  end
end)
choreo.on("CommandRejected", function(msg, ctx)
  ctx.db:exec("insert into rejected values (?, ?, ?)", msg.data.reason, msg.data.stream, msg.data.version)
end)
"""

# Reacts to bank's stream events as to any event from another host.
LEDGER = """
local choreo = require "choreo"
choreo.db:exec("create table if not exists lines(stream text, version integer, amount integer)")
choreo.on("Deposited", function(msg, ctx)
  ctx.db:exec("insert into lines values (?, ?, ?)", msg.subject, msg.streamversion, msg.data.amount)
end)
"""


def bank_lua(factor=""):
    return BANK % {"factor": factor}


def streams(host):
    """{stream: [(version, n), ...]} from the bank's own stream table."""
    out = {}
    for stream, version, msg in host.query("select stream, version, msg from choreo_streams "
                                           "order by stream, version"):
        m = harness.decode_message(msg)
        out.setdefault(stream, []).append((version, m.get("data", {}).get("n")))
    return out


@suite.test
def commands_from_another_host_append_exactly_once_across_kill_9(w):
    bank = w.host("bank", w.scripts("bank", {"bank.lua": bank_lua()}))
    teller = w.host("teller", w.scripts("teller", {"teller.lua": TELLER}))
    ledger = w.host("ledger", w.scripts("ledger", {"ledger.lua": LEDGER}))
    total = 0
    rng = random.Random(11)
    cut = 0  # rounds whose commands were not all applied when bank was killed
    with w.step("five rounds of 10000 commands, bank killed -9 while it applies them"):
        for k in range(5):
            teller.publish("Start", {"from": k * 10000 + 1, "to": (k + 1) * 10000})
            # Killed once the round's first events are in: the bank applies 10,000 commands in
            # well under a second, so a fixed pause could as well come after them all.
            wait_until(lambda: bank.scalar("select count(*) from choreo_streams") > total, 20,
                       "round %d under way" % k, interval=0.002)
            total += 10000
            time.sleep(rng.uniform(0, 0.02))
            bank.kill9()
            cut += bank.scalar("select count(*) from choreo_streams") < total
            bank.start()
        check(cut > 0, "no kill came while commands were being applied")
        print("    %d of 5 kills came while commands were being applied" % cut)
        wait_until(lambda: bank.scalar("select count(*) from choreo_streams") == total, 60,
                   "every command's event in a stream")
        time.sleep(0.5)
    with w.step("every command appended once, each stream's versions 1..n without a gap"):
        got = streams(bank)
        ns = sorted(n for events in got.values() for _, n in events)
        check_eq(ns, list(range(1, total + 1)), "the commands' numbers across the streams")
        for stream, events in got.items():
            check_eq([v for v, _ in events], list(range(1, len(events) + 1)), stream + " versions")
            check(all(n % 5 == int(stream.split("/")[1]) for _, n in events),
                  stream + " holds only its own account's deposits")
    with w.step("another host saw every stream event as an ordinary event"):
        wait_until(lambda: ledger.scalar("select count(*) from lines") == total, 30, "ledger lines")
        check_eq(ledger.scalar("select count(distinct stream || '/' || version) from lines"), total,
                 "distinct (stream, version) at the ledger")
    with w.step("snapshots agree with a fold of the events"):
        for stream, version, state in bank.query("select stream, version, state from choreo_snapshots"):
            folded = sum(n for v, n in got[stream] if v <= version)
            check_eq(harness.mp_unpack(state)[0]["balance"], folded, "snapshot of %s at %d" % (stream, version))
    with w.step("--subject and --expect from the CLI: a stale version is rejected"):
        version = len(got["Account/1"])
        ok = teller.cli("send", "--subject", "Account/1", "--expect", str(version - 1),
                        "bank", "Deposit", '{"amount": 1, "n": 0}')
        check_eq(ok.rc, 0, "send exit code (%s)" % ok.err)
        wait_until(lambda: bank.scalar("select count(*) from choreo_log where type = 'CommandRejected'") == 1,
                   20, "the rejection in bank's log")
        wait_until(lambda: teller.scalar("select count(*) from rejected") == 1, 20, "the rejection at teller")
        check_eq(teller.query("select reason, stream, version from rejected")[0],
                 ("conflict", "Account/1", version), "the rejection's data")
        ok = teller.cli("send", "--subject", "Account/1", "--expect", str(version),
                        "bank", "Deposit", '{"amount": 1, "n": 0}')
        check_eq(ok.rc, 0, "send exit code (%s)" % ok.err)
        wait_until(lambda: bank.scalar("select count(*) from choreo_streams where stream = 'Account/1'")
                   == version + 1, 20, "the expected-version command's event")
    with w.step("choreo stream prints a stream, one CloudEvents line per event"):
        out = bank.cli("stream", "Account/2")
        check_eq(out.rc, 0, "stream exit code (%s)" % out.err)
        lines = [json.loads(line) for line in out.out.splitlines()]
        check_eq([e["streamversion"] for e in lines], list(range(1, len(got["Account/2"]) + 1)),
                 "versions printed")
        check(all(e["subject"] == "Account/2" and e["dataschema"] == "v1" for e in lines),
              "subject and dataschema: %r" % lines[0])
        out = bank.cli("stream", "--format", "text", "Account/2")
        first = out.out.splitlines()[0].split()
        check_eq((first[0], first[2], first[3]), ("1", "Deposited", "(v1)"), "the first line as text")
        out = bank.cli("stream", "Account/77")
        check_eq(out.rc, 1, "stream of a stream without events")
        check("no stream named 'Account/77'" in out.err, out.err)


@suite.test
def retention_keeps_streams_and_a_changed_evolve_drops_stale_snapshots(w):
    scripts = w.scripts("bank", {"bank.lua": bank_lua()})
    bank = w.host("bank", scripts, extra=["--retain", "1s"])
    for n in range(1, 31):
        bank.cli("send", "--subject", "Account/1", "bank", "Deposit", json.dumps({"amount": n, "n": n}))
    wait_until(lambda: bank.scalar("select count(*) from choreo_streams") == 30, 30, "30 events")
    with w.step("retention trims the log, never the stream"):
        wait_until(lambda: bank.scalar("select min(seq) from choreo_log") > 40, 30,
                   "retention to delete the old log rows")
        check_eq(bank.scalar("select count(*) from choreo_streams"), 30, "events in the stream")
        out = bank.cli("stream", "Account/1")
        check_eq(len(out.out.splitlines()), 30, "events choreo stream prints")
        check(bank.scalar("select count(*) from choreo_snapshots") == 1, "a snapshot was taken")
    with w.step("a reload that changes evolve drops the snapshot; the next fold uses the new code"):
        mark = bank.log_mark()
        with open(os.path.join(scripts, "bank.lua"), "w") as f:
            f.write(bank_lua(" * 2"))
        bank.wait_log(r"scripts reloaded", 20, since=mark)
        check_eq(bank.scalar("select count(*) from choreo_snapshots"), 0, "snapshots after the reload")
        bank.cli("send", "--subject", "Account/1", "bank", "Withdraw", '{"amount": 900}')
        wait_until(lambda: bank.scalar("select count(*) from choreo_streams") == 31, 20,
                   "the withdrawal, allowed only with doubled deposits (930 > 900)")


if __name__ == "__main__":
    suite.main()
