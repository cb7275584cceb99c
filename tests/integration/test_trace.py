"""The journal and `choreo trace` on real hosts: an order that crosses three hosts (an event, a
command, its reply, a final event) is traced from its first message or from any message of it,
as a text tree, JSON and a Mermaid diagram; a failed attempt, its retry and a dead letter show
where they happened; a host that is down is named while the others' part is printed; `kill -9`
never leaves the journal listing a message that was not applied nor missing one that was;
retention deletes old rows; --no-journal keeps none; bad input gets a clear error."""
import json
import os
import re
import signal
import subprocess

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


def chain(t):
    """The tree of a `trace --json` answer as a list of (type, [(host, outcome)...]) along first
    children from the first root, and the number of messages in it."""
    by_id = {m["id"]: m for m in t["messages"]}
    path, node = [], by_id.get(t["roots"][0]) if t["roots"] else None
    while node:
        path.append((node.get("type"), [(h["host"], h["outcome"]) for h in node["handled"]]))
        node = by_id[node["caused"][0]] if node["caused"] else None
    return path, len(t["messages"])


def message(t, type_):
    """The message of a type in a `trace --json` answer (the first)."""
    return [m for m in t["messages"] if m.get("type") == type_][0]


@suite.test
def an_order_across_three_hosts(w):
    shop, stock, billing = three_hosts(w)
    first = checkout(shop, 1)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 20, "order 1 to be ready")
    t = trace_json(w, first)
    check_eq(t["correlation"], first, "the conversation is named by its first message")
    check_eq(sorted((h["name"], h["answered"], h["journal"]) for h in t["hosts"]),
             [("billing", True, True), ("shop", True, True), ("stock", True, True)], "hosts")
    path, count = chain(t)
    check_eq(count, 5, "messages in the conversation")
    check_eq(path, [("Checkout", [("shop", "ok")]), ("OrderPlaced", [("stock", "ok")]),
                    ("Charge", [("billing", "ok")]), ("Charged", [("stock", "ok")]),
                    ("OrderReady", [("shop", "ok")])], "who handled what, in causal order")
    root = message(t, "Checkout")
    check_eq(root["handled"][0]["handler"], "shop.lua:4", "where the handler was registered")
    charge = message(t, "Charge")
    check_eq((charge["kind"], charge["to"], charge["source"]), ("command", "billing", "stock"),
             "the command's kind, destination and sender")
    check_eq(message(t, "Charged")["kind"], "reply", "the reply's kind")
    check_eq(message(t, "Charged")["causation"], charge["id"], "the reply's cause")

    with w.step("any message of the conversation traces all of it"):
        again = trace_json(w, charge["id"])
        check_eq(again["correlation"], first, "correlation found from a middle message")
        check_eq(chain(again), (path, count), "the same tree")

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
        ids = {name: "p%d" % i for i, name in enumerate(
            re.findall(r"^  participant p\d+ as (\S+)$", out.out, re.M))}
        check_eq(sorted(ids), ["billing", "shop", "stock"], "participants")
        arrows = ["%s->>%s: Checkout" % (ids["shop"], ids["shop"]),
                  "%s-)%s: OrderPlaced" % (ids["shop"], ids["stock"]),
                  "%s->>%s: Charge" % (ids["stock"], ids["billing"]),
                  "%s->>%s: Charged" % (ids["billing"], ids["stock"]),
                  "%s-)%s: OrderReady" % (ids["stock"], ids["shop"])]
        for want in arrows:
            check("  " + want in lines, "%r in:\n%s" % (want, out.out))
        check(lines.index("  " + arrows[2]) < lines.index("  " + arrows[3]), "cause before effect")


@suite.test
def a_retry_and_a_dead_letter_show_where_they_happened(w):
    shop, stock, billing = three_hosts(w)
    retried = checkout(shop, 2)
    dead = checkout(shop, 3)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 20, "order 2 to be ready")
    wait_until(lambda: billing.scalar("select count(*) from choreo_dead_letters") == 1, 20,
               "order 3 to be dead")
    path, _ = chain(trace_json(w, retried))
    check_eq(path[2], ("Charge", [("billing", "retrying"), ("billing", "ok")]),
             "a failed attempt, then its retry")
    t = trace_json(w, dead)
    path, count = chain(t)
    check_eq(count, 3, "the conversation ends at the dead letter")
    check_eq(path[2], ("Charge", [("billing", "retrying"), ("billing", "dead")]), "dead")
    handled = message(t, "Charge")["handled"]
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
    pending = message(t, "Checkout")["timeouts"]
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
    path, count = chain(t)
    check_eq(count, 5, "messages known from the hosts that answered")
    check_eq([p[0] for p in path], ["Checkout", "OrderPlaced", "Charge", "Charged", "OrderReady"],
             "the chain, through the command the missing host handled")
    check_eq(path[2][1], [], "nobody that answered handled the command")
    out = trace(w, first)
    check_eq(out.rc, 0, "a trace with a host down still succeeds: %r" % out)
    check("billing did not answer" in out.out, out.out)
    check("(not seen: billing did not answer)" in out.out, out.out)


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def spans(path):
    """{message id: span} from an --otlp-json file, each span with its attributes flattened."""
    out = {}
    with open(path) as f:
        for line in f:
            for rs in json.loads(line)["resourceSpans"]:
                service = rs["resource"]["attributes"][0]["value"]["stringValue"]
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        span["attrs"] = {a["key"]: a["value"]["stringValue"]
                                         for a in span["attributes"]}
                        span["service"] = service
                        out[span["attrs"]["messaging.message.id"]] = span
    return out


@suite.test
def trace_context_crosses_hosts_and_spans_are_written(w):
    otlp = w.scripts("spans", {})
    shop, stock, billing = three_hosts(w, extra=["--otlp-json", otlp])
    out = shop.cli("send", "--traceparent", TRACEPARENT, "shop", "Checkout", '{"order": 1}')
    check_eq(out.rc, 0, "send with a traceparent: %r" % out)
    first = re.search(r"sent (\S+)", out.out).group(1)
    untraced = checkout(shop, 4)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 2, 20, "both orders")
    for h in (shop, stock, billing):
        h.stop()
    found = {}
    for name in ("shop", "stock", "billing"):
        found.update(spans("%s/%s.otlp.jsonl" % (otlp, name)))
    conversation = {m["id"]: m for m in journal(shop) + journal(stock) + journal(billing)}
    mine = [i for i, m in conversation.items() if m["correlation"] == first]
    check_eq(len(mine), 5, "messages of the traced order")
    for i in mine:
        span = found[i]
        check_eq(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736", "trace id of %s" % i)
        cause = conversation[i]["causation"]
        parent = found[cause]["spanId"] if cause else "00f067aa0ba902b7"
        check_eq(span.get("parentSpanId"), parent, "parent span of %s" % i)
        check_eq(span["kind"], 5, "a consumer span")
        check_eq(span["status"], {"code": 1}, "status of %s" % i)
        check_eq(span["attrs"]["messaging.message.conversation_id"], first, "conversation")
    check_eq(found[first]["service"], "shop", "the service that handled the first")
    check(int(found[first]["endTimeUnixNano"]) >= int(found[first]["startTimeUnixNano"]),
          found[first])
    # What comes without a traceparent starts a trace of its own on an exporting host.
    root = found[untraced]
    check("parentSpanId" not in root and root["traceId"] != "4bf92f3577b34da6a3ce929d0e0e4736",
          root)
    others = [found[i] for i, m in conversation.items() if m["correlation"] == untraced]
    check_eq({s["traceId"] for s in others}, {root["traceId"]}, "one trace for the other order")
    # On the wire: what stock emitted while handling OrderPlaced names that handling's span.
    charge = [m for m in conversation.values()
              if m["type"] == "Charge" and m["correlation"] == first][0]
    (raw,) = stock.query("select msg from choreo_log where seq = ?", charge["seq"])[0]
    emitted = harness.decode_message(raw)
    check_eq(emitted["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-%s-01"
             % found[charge["causation"]]["spanId"], "traceparent of the emitted command")


@suite.test
def trace_context_continues_through_a_host_that_exports_nothing(w):
    shop = w.host("shop", w.scripts("shop", {"shop.lua": SHOP_LUA}))
    stock = w.host("stock", w.scripts("stock", {"stock.lua": STOCK_LUA}))
    billing = w.host("billing", w.scripts("billing", {"billing.lua": BILLING_LUA}))
    out = shop.cli("send", "--traceparent", TRACEPARENT, "shop", "Checkout", '{"order": 1}')
    check_eq(out.rc, 0, "send: %r" % out)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 20, "the order")
    for h in (shop, stock, billing):
        for (raw,) in h.query("select msg from choreo_log"):
            msg = harness.decode_message(raw)
            check(msg.get("traceparent", "").startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                  "%s's %s carries the trace: %r" % (h.name, msg["type"], msg.get("traceparent")))
    untraced = checkout(shop, 5)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 2, 20, "the other order")
    (raw,) = shop.query("select msg from choreo_log where type = 'OrderPlaced' order by seq desc")[0]
    check("traceparent" not in harness.decode_message(raw),
          "no trace begins on hosts that export no spans (%s)" % untraced)
    out = shop.cli("send", "--traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00", "shop", "X")
    check_eq(out.rc, 2, "a malformed traceparent: %r" % out)
    check("--traceparent must be a W3C traceparent" in out.err, out.err)


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


EDGES_LUA = """
local choreo = require "choreo"
-- A chain: each Ping causes the next, `left` times.
choreo.on("Ping", function(msg, ctx)
  if msg.data.left > 0 then ctx:publish("Ping", { left = msg.data.left - 1 }) end
end)
-- One batch: a type of 9,000 characters, then two small ones (entries that repeat fields).
choreo.on("Spray", function(msg, ctx)
  ctx:publish(string.rep("T", 9000), {})
  ctx:publish("Small", {})
  ctx:publish("Small", {})
end)
choreo.on("Small", function() end)
choreo.on(string.rep("T", 9000), function() end)
-- Two messages in one batch, the second failing at its only attempt.
choreo.on("Pair", function(msg, ctx) ctx:publish("First", {}) ctx:publish("Second", {}) end)
choreo.on("First", function() end)
choreo.on("Second", function() error("second fails") end, { attempts = 1, backoff = {} })
-- One handling that publishes more than a trace's answer lists.
choreo.on("Flood", function(msg, ctx) for i = 1, 30000 do ctx:publish("Drop", { i = i }) end end)
"""


@suite.test
def what_a_demanding_user_runs_into(w):
    host = w.host("edges", w.scripts("edges", {"edges.lua": EDGES_LUA}))

    with w.step("a conversation of 3,000 messages in a chain"):
        first = re.search(r"published (\S+)", host.cli("publish", "Ping", '{"left": 2999}').out).group(1)
        wait_until(lambda: host.scalar("select count(*) from choreo_log where type = 'Ping'") == 3000
                   and host.checkpoint("edges") == host.head(), 60, "the chain to end")
        out = trace(w, first)
        check_eq(out.rc, 0, "text trace of a long chain: rc %r, stderr %r" % (out.rc, out.err[-300:]))
        check(out.out.startswith("conversation %s: 3000 messages" % first), out.out[:200])
        check(re.search(r"^ *└─ \[depth 2999\] edges/\d+ Ping", out.out, re.M), out.out[-400:])
        t = trace_json(w, first)
        check_eq(len(t["messages"]), 3000, "messages in JSON")
        check_eq(chain(t)[1], 3000, "the chain walks through")
        out = trace(w, "--format", "mermaid", first)
        check_eq(out.rc, 0, "mermaid of a long chain")

    with w.step("a 9,000-character type does not hide the entries after it"):
        spray = re.search(r"published (\S+)", host.cli("publish", "Spray").out).group(1)
        wait_until(lambda: host.checkpoint("edges") == host.head(), 20, "the spray")
        t = trace_json(w, spray)
        check_eq(len(t["messages"]), 4, "messages")
        check(all(m["handled"] for m in t["messages"]), [m["handled"] for m in t["messages"]])

    with w.step("the failed message names its own handler"):
        pair = re.search(r"published (\S+)", host.cli("publish", "Pair").out).group(1)
        wait_until(lambda: host.scalar("select count(*) from choreo_dead_letters") == 1, 20, "dead")
        t = trace_json(w, pair)
        check_eq(message(t, "Second")["handled"][0]["handler"], "edges.lua:18", "Second's handler")
        check_eq(message(t, "First")["handled"][0]["handler"], "edges.lua:17", "First's handler")

    with w.step("a conversation id of 1,500 characters"):
        long_id = "c" * 1500
        # Only a handler sets a correlation: one is added that does.
        with open(os.path.join(host.scripts, "long.lua"), "w") as f:
            f.write('local choreo = require "choreo"\n'
                    'choreo.on("Long", function(msg, ctx) '
                    'ctx:publish("Small", {}, { correlationid = string.rep("c", 1500) }) end)\n')
        host.wait_log(r"reloaded")
        host.cli("publish", "Long")
        wait_until(lambda: host.scalar("select count(*) from choreo_log where type = 'Small'") == 3,
                   20, "the long conversation's message")
        seq = host.scalar("select max(seq) from choreo_log where type = 'Small'")
        t = trace_json(w, "edges/%d" % seq)
        check_eq(t["correlation"], long_id, "found from the message's id")
        check_eq(len(t["messages"]), 1, "the message")

    with w.step("a handler that published 30,000 messages in one go"):
        flood = re.search(r"published (\S+)", host.cli("publish", "Flood").out).group(1)
        wait_until(lambda: host.checkpoint("edges") == host.head()
                   and host.scalar("select count(*) from choreo_log where type = 'Drop'") == 30000,
                   60, "the flood")
        out = trace(w, flood)
        check_eq(out.rc, 0, "trace of the flood: %r" % out.err[-300:])
        check("edges has more of this conversation than one answer holds" in out.out, out.out[:400])
        t = trace_json(w, flood)
        check_eq(len(t["messages"]), 10001, "the flood and the first 10,000 it emitted")
        check_eq([(h["name"], h["more"]) for h in t["hosts"]], [("edges", True)], "cut, and said")
        check_eq(host.cli("status").rc, 0, "the host answers on")


@suite.test
def a_stopped_host_costs_the_wait_once(w):
    shop, stock, billing = three_hosts(w)
    first = checkout(shop, 1)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 20, "order 1 to be ready")
    os.kill(billing.pid, signal.SIGSTOP)
    try:
        out = trace(w, first)
    finally:
        os.kill(billing.pid, signal.SIGCONT)
    check_eq(out.rc, 0, "a trace with a host stopped: %r" % out)
    check("billing did not answer (no answer within 3 s): its part is missing" in out.out, out.out)
    check("conversation %s: 5 messages, 2 of 3 hosts answered" % first in out.out, out.out)


@suite.test
def the_map_shows_who_reacted_to_what(w):
    shop, stock, billing = three_hosts(w)
    for order in (1, 2, 3):
        checkout(shop, order)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 2
               and billing.scalar("select count(*) from choreo_dead_letters") == 1, 20,
               "two orders ready and one dead")
    out = w.cli("map", "--bus", w.bus, "--format", "json")
    check_eq(out.rc, 0, "map: %r" % out)
    m = json.loads(out.out)
    edges = {(e["from"], e["to"], e["type"], e["kind"]): (e["count"], e["failed"], e["dead"])
             for e in m["edges"]}
    check_eq(edges, {
        ("shop", "shop", "Checkout", "command"): (3, 0, 0),
        ("shop", "stock", "OrderPlaced", "event"): (3, 0, 0),
        ("stock", "billing", "Charge", "command"): (5, 3, 1),
        ("billing", "stock", "Charged", "reply"): (2, 0, 0),
        ("stock", "shop", "OrderReady", "event"): (2, 0, 0),
    }, "edges: (count, failed, dead) per sender, host, type and kind")
    check_eq(sorted((h["name"], h["answered"]) for h in m["hosts"]),
             [("billing", True), ("shop", True), ("stock", True)], "hosts")
    out = w.cli("map", "--bus", w.bus)
    check_eq(out.rc, 0, "mermaid map")
    lines = out.out.splitlines()
    check_eq(lines[0], "flowchart LR", "a Mermaid flowchart")
    nodes = dict(re.findall(r'^  (n\d+)\["(\w+)', out.out, re.M))
    ids = {name: n for n, name in nodes.items()}
    check('  %s -.->|"OrderPlaced ×3"| %s' % (ids["shop"], ids["stock"]) in lines, out.out)
    check('  %s -->|"Charge ×5, 3 failed, 1 dead"| %s' % (ids["stock"], ids["billing"]) in lines,
          out.out)
    out = w.cli("map", "--bus", w.bus, "--format", "dot")
    check(out.rc == 0 and out.out.startswith("digraph choreography {") and
          out.out.rstrip().endswith("}"), out.out)
    check('label="OrderPlaced ×3 (event)", style=dashed];' in out.out, out.out)
    out = w.cli("map", "--bus", w.bus, "--since", "1s")
    check_eq(out.rc, 0, "a short window")
    out = w.cli("map", "--bus", w.bus, "--since", "soon")
    check_eq(out.rc, 2, "a bad window: %r" % out)
    out = w.cli("map", "--bus", w.bus, "--format", "svg")
    check_eq(out.rc, 2, "a bad format: %r" % out)


@suite.test
def hosts_on_other_machines_are_asked_through_their_fetch_endpoint(w):
    """Each host on a bus of its own, as on three machines, joined over tcp://."""
    p_shop, p_stock, p_billing = (harness.free_port_pair() for _ in range(3))
    url = lambda port: "tcp://127.0.0.1:%d" % port
    buses = [os.path.join(w.dir, "bus-" + n) for n in ("shop", "stock", "billing")]
    for b in buses:
        os.makedirs(b)
    shop = w.host("shop", w.scripts("shop", {"shop.lua": SHOP_LUA}), bus=buses[0],
                  extra=["--listen", url(p_shop), "--peer", url(p_stock)])
    w.host("stock", w.scripts("stock", {"stock.lua": STOCK_LUA}), bus=buses[1],
           extra=["--listen", url(p_stock), "--peer", url(p_shop), "--peer", url(p_billing)])
    w.host("billing", w.scripts("billing", {"billing.lua": BILLING_LUA}), bus=buses[2],
           extra=["--listen", url(p_billing), "--peer", url(p_stock)])
    first = checkout(shop, 1)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 1, 30, "the order across tcp")
    out = w.cli("trace", "--bus", buses[0], "--json", "--peer", url(p_stock), "--peer",
                url(p_billing), first)
    check_eq(out.rc, 0, "trace with peers: %r" % out)
    t = json.loads(out.out)
    check_eq(sorted((h["name"], h["answered"]) for h in t["hosts"]),
             [("billing", True), ("shop", True), ("stock", True)], "the peers answer by name")
    path, count = chain(t)
    check_eq(count, 5, "the whole order")
    check_eq([hop for _, hops in path for hop in hops],
             [("shop", "ok"), ("stock", "ok"), ("billing", "ok"), ("stock", "ok"), ("shop", "ok")],
             "every hop, on its machine")
    out = w.cli("map", "--bus", buses[0], "--format", "json", "--peer", url(p_stock), "--peer",
                url(p_billing))
    check_eq(out.rc, 0, "map with peers: %r" % out)
    edges = {(e["from"], e["to"], e["type"]) for e in json.loads(out.out)["edges"]}
    check(("stock", "billing", "Charge") in edges, edges)
    # Only reads go over the network: an append asked that way is refused.
    poke = os.path.join(w.dir, "ask")
    with open(poke, "wb") as f:
        f.write(harness.mp_pack(["ask", json.dumps({"op": "publish", "type": "Evil"})]))
    rep = "tcp://127.0.0.1:%d" % (p_shop + 1)
    check(harness.POKE, "choreo_poke is not built (set CHOREO_POKE)")
    out = subprocess.run([harness.POKE, "req", rep, poke, "3000"], capture_output=True,
                         text=True, timeout=30).stdout
    check("only journal, flows, conversations and status are answered" in out, out)
    check_eq(shop.scalar("select count(*) from choreo_log where type = 'Evil'"), 0, "no append")
    out = w.cli("trace", "--bus", buses[0], "--peer", "udp://x", first)
    check_eq(out.rc, 0, "a bad peer is a host that did not answer: %r" % out)
    check("did not answer (--peer udp://x: expected tcp://HOST:PORT" in out.out, out.out)


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
