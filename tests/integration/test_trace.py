"""The journal and `choreo trace` on real hosts: an order that crosses three hosts (an event, a
command, its reply, a final event) is traced from its first message or from any message of it,
as a text tree, JSON and a Mermaid diagram; a failed attempt, its retry and a dead letter show
where they happened; a host that is down is named while the others' part is printed; `kill -9`
never leaves the journal listing a message that was not applied nor missing one that was;
retention deletes old rows; --no-journal keeps none; bad input gets a clear error."""
import json
import re

import harness
from harness import Suite, check, check_eq, wait_until

suite = Suite("trace")

SHOP_LUA = """
local choreo = require "choreo"
choreo.db:exec("create table if not exists ready(order_id integer primary key)")
choreo.on("Checkout", function(msg, ctx)
  if msg.data.order == 9 then ctx:timeout(600, "Remind", { order = 9 }) return end
  ctx:publish("OrderPlaced", { order = msg.data.order })
end)
choreo.on("OrderReady", function(msg, ctx)
  ctx.db:exec("insert into ready values (?)", msg.data.order)
end)
"""

STOCK_LUA = """
local choreo = require "choreo"
choreo.on("OrderPlaced", function(msg, ctx)
  ctx:send("billing", "Charge", { order = msg.data.order })
end)
choreo.on("Charged", function(msg, ctx)
  ctx:publish("OrderReady", { order = msg.data.order })
end)
"""

# Order 2 fails its first attempt, order 3 every attempt: one delayed retry, then dead. (The
# count is kept in memory: a failed attempt's database effects roll back.)
BILLING_LUA = """
local choreo = require "choreo"
local tries = {}
choreo.on("Charge", function(msg, ctx)
  local order = msg.data.order
  tries[order] = (tries[order] or 0) + 1
  if order == 3 or (order == 2 and tries[order] == 1) then error("card declined for order " .. order) end
  ctx:reply("Charged", { order = order })
end, { attempts = 1, backoff = { 0.2 } })
"""


OUTCOMES = ["ok", "retrying", "dead", "unhandled"]


def journal(host):
    """Every journal entry of a host, oldest first, as dicts: decoded as runtime/core/journal.c
    describes its batches."""
    fields = ["at_ms", "id", "source", "seq", "type", "kind", "correlation", "causation",
              "handler", "outcome", "attempts", "duration_us", "emitted_first", "emitted_last",
              "error"]
    out = []
    for count, blob in host.query("select count, entries from choreo_journal order by rowid"):
        at, at_ms, previous = 0, 0, None
        for _ in range(count):
            entry, used = harness.mp_unpack(blob[at:])
            at += used
            row = dict(zip(fields, entry))
            for field in ("source", "type", "kind", "correlation", "causation", "handler"):
                if row[field] is True:  # the same as the entry before
                    row[field] = previous[field]
            previous = row
            at_ms += row["at_ms"]
            row["at_ms"] = at_ms
            if row["id"] is True:
                row["id"] = "%s/%d" % (row["source"], row["seq"])
            row["outcome"] = OUTCOMES[row["outcome"]]
            out.append(row)
        check_eq(at, len(blob), "a batch's entries fill its blob")
    return out


def three_hosts(w, extra=()):
    shop = w.host("shop", w.scripts("shop", {"shop.lua": SHOP_LUA}), extra=extra)
    stock = w.host("stock", w.scripts("stock", {"stock.lua": STOCK_LUA}), extra=extra)
    billing = w.host("billing", w.scripts("billing", {"billing.lua": BILLING_LUA}), extra=extra)
    return shop, stock, billing


def checkout(shop, order):
    """Sends Checkout to shop; returns the id of the command."""
    out = shop.cli("send", "shop", "Checkout", json.dumps({"order": order}))
    check_eq(out.rc, 0, "send exit code: %r" % out)
    return re.search(r"sent (\S+)", out.out).group(1)


def trace(w, *args):
    return w.cli("trace", "--bus", w.bus, *args)


def trace_json(w, ident):
    out = trace(w, "--json", ident)
    check_eq(out.rc, 0, "trace --json exit code: %r" % out)
    return json.loads(out.out)


def chain(messages):
    """The tree as a list of (type, [(host, outcome)...]) along first children, and the
    number of messages in the tree."""
    path, count, todo = [], 0, list(messages)
    while todo:
        m = todo.pop()
        count += 1
        todo.extend(m["caused"])
    node = messages[0] if messages else None
    while node:
        path.append((node.get("type"), [(h["host"], h["outcome"]) for h in node["handled"]]))
        node = node["caused"][0] if node["caused"] else None
    return path, count


@suite.test
def an_order_across_three_hosts(w):
    shop, stock, billing = three_hosts(w)
    first = checkout(shop, 1)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 20, "order 1 to be ready")
    t = trace_json(w, first)
    check_eq(t["correlation"], first, "the conversation is named by its first message")
    check_eq(sorted((h["name"], h["answered"], h["journal"]) for h in t["hosts"]),
             [("billing", True, True), ("shop", True, True), ("stock", True, True)], "hosts")
    path, count = chain(t["messages"])
    check_eq(count, 5, "messages in the conversation")
    check_eq(path, [("Checkout", [("shop", "ok")]), ("OrderPlaced", [("stock", "ok")]),
                    ("Charge", [("billing", "ok")]), ("Charged", [("stock", "ok")]),
                    ("OrderReady", [("shop", "ok")])], "who handled what, in causal order")
    root = t["messages"][0]
    check_eq(root["handled"][0]["handler"], "shop.lua:4", "where the handler was registered")
    charge = root["caused"][0]["caused"][0]
    check_eq((charge["kind"], charge["to"], charge["source"]), ("command", "billing", "stock"),
             "the command's kind, destination and sender")
    check_eq(charge["caused"][0]["kind"], "reply", "the reply's kind")

    with w.step("any message of the conversation traces all of it"):
        again = trace_json(w, charge["id"])
        check_eq(again["correlation"], first, "correlation found from a middle message")
        check_eq(chain(again["messages"]), (path, count), "the same tree")

    with w.step("text"):
        out = trace(w, first)
        check_eq(out.rc, 0, "trace exit code: %r" % out)
        check(out.out.startswith("conversation %s: 5 messages, 3 of 3 hosts answered\n" % first),
              out.out)
        for line in [r"^%s Checkout \(command to shop\)$" % re.escape(first),
                     r"^└─ stock/\d+ Charge \(command to billing\)$".replace("^", r"^\s*"),
                     r"billing +\+\d+ ms +ok +[\d.]+ ms +billing\.lua:4$",
                     r"OrderReady \(event\)$"]:
            check(re.search(line, out.out, re.M), "%r in:\n%s" % (line, out.out))

    with w.step("mermaid"):
        out = trace(w, "--format", "mermaid", first)
        check_eq(out.rc, 0, "mermaid exit code")
        lines = out.out.splitlines()
        check_eq(lines[0], "sequenceDiagram", "first line")
        for want in ["shop->>shop: Checkout", "shop-)stock: OrderPlaced", "stock->>billing: Charge",
                     "billing->>stock: Charged", "stock-)shop: OrderReady"]:
            check("  " + want in lines, "%r in:\n%s" % (want, out.out))
        check(lines.index("  stock->>billing: Charge") < lines.index("  billing->>stock: Charged"),
              "the diagram follows time")


@suite.test
def a_retry_and_a_dead_letter_show_where_they_happened(w):
    shop, stock, billing = three_hosts(w)
    retried = checkout(shop, 2)
    dead = checkout(shop, 3)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 20, "order 2 to be ready")
    wait_until(lambda: billing.scalar("select count(*) from choreo_dead_letters") == 1, 20,
               "order 3 to be dead")
    path, _ = chain(trace_json(w, retried)["messages"])
    check_eq(path[2], ("Charge", [("billing", "retrying"), ("billing", "ok")]),
             "a failed attempt, then its retry")
    t = trace_json(w, dead)
    path, count = chain(t["messages"])
    check_eq(count, 3, "the conversation ends at the dead letter")
    check_eq(path[2], ("Charge", [("billing", "retrying"), ("billing", "dead")]), "dead")
    handled = t["messages"][0]["caused"][0]["caused"][0]["handled"]
    check(all("card declined for order 3" in h["error"] for h in handled), handled)
    out = trace(w, dead)
    check(re.search(r"billing +\+\d+ ms +dead .*error: .*card declined for order 3", out.out),
          out.out)


@suite.test
def a_pending_timeout_shows_under_the_message_that_set_it(w):
    shop = w.host("shop", w.scripts("shop", {"shop.lua": SHOP_LUA}))
    first = checkout(shop, 9)
    wait_until(lambda: shop.scalar("select count(*) from choreo_timeouts") == 1, 20, "the timer")
    t = trace_json(w, first)
    pending = t["messages"][0]["timeouts"]
    check_eq([(p["type"], p["host"]) for p in pending], [("Remind", "shop")], "pending timeouts")
    check(590_000 < pending[0]["in_ms"] <= 600_000, pending)
    out = trace(w, first)
    check(re.search(r"shop +timeout Remind pending, due in (59\d|600)\.\d s", out.out), out.out)


@suite.test
def a_host_that_is_down_is_named_and_the_rest_printed(w):
    shop, stock, billing = three_hosts(w)
    first = checkout(shop, 1)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 20, "order 1 to be ready")
    billing.kill9()  # its ipc endpoints stay behind: asked, it cannot answer
    t = trace_json(w, first)
    check_eq({h["name"]: h["answered"] for h in t["hosts"]},
             {"shop": True, "stock": True, "billing": False}, "who answered")
    path, count = chain(t["messages"])
    check_eq(count, 5, "messages known from the hosts that answered")
    check_eq([p[0] for p in path], ["Checkout", "OrderPlaced", "Charge", "Charged", "OrderReady"],
             "the chain, through the command the missing host handled")
    check_eq(path[2][1], [], "nobody that answered handled the command")
    out = trace(w, first)
    check_eq(out.rc, 0, "a trace with a host down still succeeds: %r" % out)
    check("billing did not answer" in out.out, out.out)
    check("(not seen: billing did not answer)" in out.out, out.out)


@suite.test
def the_journal_commits_with_the_messages_it_lists(w):
    N = 20000
    consumer = w.host("consumer", w.scripts("consumer", {
        "consumer.lua": harness.consumer_lua(work=2000)}))
    producer = w.host("producer", w.scripts("producer", {"producer.lua": harness.PRODUCER_LUA}))
    producer.send("producer", "Burst", {"n": N})
    def compare(when):
        listed = [(e["source"], e["seq"]) for e in journal(consumer)
                  if e["type"] == "Tick" and e["outcome"] == "ok"]
        applied = consumer.query("select source, seq from ticks order by n")
        check_eq(len(listed), len(set(listed)), "journal entries listed twice (%s)" % when)
        check(listed == applied, "journal and applied ticks differ %s: %d vs %d rows"
              % (when, len(listed), len(applied)))
        return len(applied)

    for threshold in (3000, 9000, 15000):
        wait_until(lambda: (consumer.scalar("select count(*) from ticks") or 0) >= threshold, 60,
                   "the consumer to apply %d ticks" % threshold, interval=0.01)
        consumer.kill9()
        n = compare("after kill -9")
        print("    killed the consumer at %d of %d applied" % (n, N))
        consumer.start()
    wait_until(lambda: consumer.scalar("select count(*) from ticks") == N, 60, "all ticks")
    consumer.stop()
    check_eq(compare("at the end"), N, "ticks applied and journaled")


@suite.test
def retention_deletes_old_rows(w):
    shop, stock, billing = three_hosts(w, extra=["--retain", "1s", "--retain-max", "2s"])
    checkout(shop, 1)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 20, "order 1 to be ready")
    check_eq([e["type"] for e in journal(stock)], ["OrderPlaced", "Charged"], "stock's journal")
    wait_until(lambda: stock.scalar("select count(*) from choreo_journal") == 0, 30,
               "retention to delete stock's journal")
    check_eq(stock.scalar("select count(*) from choreo_journal_conversations"), 0,
             "the conversations' rows go with their batches")


@suite.test
def no_journal_and_bad_input(w):
    shop = w.host("shop", w.scripts("shop", {"shop.lua": SHOP_LUA}), extra=["--no-journal"])
    first = checkout(shop, 1)
    wait_until(lambda: shop.scalar("select count(*) from choreo_log") == 2, 20, "the event")
    check_eq(shop.scalar("select count(*) from sqlite_master where name = 'choreo_journal'"), 0,
             "no journal table with --no-journal")
    out = trace(w, first)
    check_eq(out.rc, 1, "nothing to trace: %r" % out)
    check_eq(out.err.strip(), "choreo: no host that answered knows %s; shop keeps no journal"
             % first, "error")
    out = trace(w)
    check_eq(out.rc, 2, "no id: %r" % out)
    check("trace needs a message id or a correlation id" in out.err, out.err)
    out = trace(w, "--format", "xml", first)
    check_eq(out.rc, 2, "bad format: %r" % out)
    out = trace(w, first, "second")
    check_eq(out.rc, 2, "two ids: %r" % out)
    out = w.cli("trace", "--bus", w.bus, "--host", "nobody", first)
    check_eq(out.rc, 1, "a host that is not running: %r" % out)
    check("nobody did not answer (not running)" in out.err, out.err)


if __name__ == "__main__":
    suite.main()
