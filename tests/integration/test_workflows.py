"""Durable workflows on real hosts: an order workflow on `orders` calls the `warehouse` host
over the bus, waits for its event, sleeps and publishes; `kill -9` of either host at random
points through many instances loses no step and repeats no command or publish; a hot reload
whose code no longer matches a running instance's history is refused (and `choreo replay-check`
says so offline), a restart with such code marks the instance stuck, and fixed code resumes it;
retention deletes instances that ended long ago; `choreo start`, `choreo workflows list|show`
and `choreo status` as a user runs them."""
import json
import random
import re
import time

import harness
from harness import Suite, check, check_eq, wait_until

suite = Suite("workflows")

ORDERS_LUA = """
local choreo = require "choreo"
choreo.workflow("Fulfilment", function(wf, input)
  local r = wf:call("warehouse", "ReserveStock", { order = input.order }, { timeout = 60 })
  if not r then wf:fail("the warehouse did not answer") end
  wf:compensate(function() wf:send("warehouse", "ReleaseStock", { order = input.order }) end)
  local paid = wf:wait("PaymentCaptured", { timeout = %(pay_timeout)s })
  if not paid then wf:fail("payment timed out") end
  wf:sleep(0.2)
  wf:publish("OrderShipped", { order = input.order, amount = paid.amount })
  return { status = "shipped", order = input.order }
end)
"""

# Reserves stock (once per order: the inbox makes a redelivered command a no-op), answers, and
# for orders not divisible by 4 captures the payment, an event of the workflow's conversation.
WAREHOUSE_LUA = """
local choreo = require "choreo"
choreo.db:exec("create table if not exists reserved(order_id integer primary key)")
choreo.db:exec("create table if not exists released(order_id integer primary key)")
choreo.on("ReserveStock", function(msg, ctx)
  ctx.db:exec("insert into reserved values (?)", msg.data.order)
  ctx:reply("StockReserved", { ok = true })
  if msg.data.order % 4 ~= 0 then ctx:publish("PaymentCaptured", { amount = msg.data.order * 10 }) end
end)
choreo.on("ReleaseStock", function(msg, ctx)
  ctx.db:exec("insert into released values (?)", msg.data.order)
end)
"""


def orders_lua(pay_timeout=30):
    return ORDERS_LUA % {"pay_timeout": pay_timeout}


def two_hosts(w, pay_timeout=30):
    warehouse = w.host("warehouse", w.scripts("warehouse", {"warehouse.lua": WAREHOUSE_LUA}))
    orders = w.host("orders", w.scripts("orders", {"orders.lua": orders_lua(pay_timeout)}))
    return orders, warehouse


def statuses(orders):
    return dict(orders.query("select status, count(*) from choreo_workflows group by status"))


def emitted(host, type_):
    """{order: how many messages of type_ the host's log holds for it}"""
    out = {}
    for (msg,) in host.query("select msg from choreo_log where type = ?", type_):
        order = harness.decode_message(msg)["data"]["order"]
        out[order] = out.get(order, 0) + 1
    return out


@suite.test
def an_order_across_two_hosts_and_the_cli(w):
    orders, warehouse = two_hosts(w)
    out = orders.cli("start", "Fulfilment", "7", '{"order": 7}')
    check_eq(out.rc, 0, "choreo start exit code: %r" % out)
    check(re.match(r"start of Fulfilment 7 sent as orders/\d+", out.out), out.out)
    wait_until(lambda: statuses(orders).get("completed") == 1, 20, "the workflow to complete")
    out = orders.cli("workflows", "show", "Fulfilment", "7")
    check_eq(out.rc, 0, "workflows show exit code")
    for line in ("Fulfilment 7: completed", 'input   {"order":7}',
                 "call warehouse ReserveStock", "-> reply StockReserved from warehouse {\"ok\":true}",
                 "wait PaymentCaptured", "-> event PaymentCaptured from warehouse {\"amount\":70}",
                 "sleep", "publish OrderShipped"):
        check(line in out.out, "workflows show has %r:\n%s" % (line, out.out))
    shown = json.loads(orders.cli("workflows", "--json", "show", "Fulfilment", "7").out)
    check_eq(shown["result"], {"status": "shipped", "order": 7}, "the result, as JSON")
    check_eq([s["op"] for s in shown["history"]], ["call", "wait", "sleep", "publish"],
             "the steps, as JSON")
    check_eq(warehouse.scalar("select count(*) from reserved"), 1, "reservations")
    out = orders.cli("workflows", "list")
    check(re.search(r"^Fulfilment\s+7\s+completed\s+4 steps", out.out, re.M), out.out)
    out = orders.cli("workflows", "--json", "list", "--status", "completed")
    check_eq(json.loads(out.out)["status"], "completed", "workflows --json list")
    # a second start of the same id is a no-op
    check_eq(orders.cli("start", "Fulfilment", "7", '{"order": 7}').rc, 0, "second start")
    time.sleep(0.5)
    check_eq(warehouse.scalar("select count(*) from reserved"), 1, "reservations after a 2nd start")
    # bad input: clear errors, never a crash
    out = orders.cli("start", "Fulfilment", "8", "{not json")
    check_eq(out.rc, 2, "start with bad JSON: %r" % out)
    out = orders.cli("workflows", "show", "Fulfilment", "nope")
    check(out.rc == 1 and "no instance" in out.err, "show of a missing id: %r" % out)
    out = orders.cli("workflows", "list", "--status", "odd")
    check_eq(out.rc, 2, "list with an unknown status")
    orders.cli("start", "Nope", "1")
    orders.wait_log(r"no workflow named 'Nope'")
    check(orders.alive(), "orders survives a start of an unknown workflow")


@suite.test
def kill_9_at_random_points_repeats_nothing(w):
    orders, warehouse = two_hosts(w, pay_timeout=3)
    seed = int(time.time())
    rng = random.Random(seed)
    print("    seed %d" % seed, flush=True)
    n = 40
    for order in range(1, n + 1):
        check_eq(orders.cli("start", "Fulfilment", str(order), json.dumps({"order": order})).rc, 0,
                 "start %d" % order)
        if order % 5 == 0:
            victim = rng.choice((orders, warehouse))
            time.sleep(rng.uniform(0, 0.3))
            victim.kill9()
            victim.start()
    for _ in range(8):
        time.sleep(rng.uniform(0.2, 0.8))
        victim = rng.choice((orders, warehouse))
        victim.kill9()
        victim.start()
    wait_until(lambda: statuses(orders) == {"completed": n - n // 4, "failed": n // 4}, 60,
               "every instance to end (statuses now: %r)" % (statuses(orders),))
    reserved = emitted(orders, "ReserveStock")
    check_eq(sorted(reserved), list(range(1, n + 1)), "orders whose stock was asked for")
    check_eq(set(reserved.values()), {1}, "ReserveStock commands per order")
    shipped = emitted(orders, "OrderShipped")
    check_eq(sorted(shipped), [o for o in range(1, n + 1) if o % 4], "orders shipped")
    check_eq(set(shipped.values()), {1}, "OrderShipped events per order")
    released = emitted(orders, "ReleaseStock")
    check_eq(sorted(released), [o for o in range(1, n + 1) if o % 4 == 0], "orders released")
    check_eq(set(released.values()), {1}, "ReleaseStock commands per order")
    wait_until(lambda: warehouse.scalar("select count(*) from released") == n // 4, 20,
               "the warehouse to release the unpaid orders")
    check_eq(warehouse.scalar("select count(*) from reserved"), n, "reservations")
    check_eq(orders.scalar("select count(*) from choreo_timeouts"), 0, "timers left")
    check_eq(orders.scalar("select count(*) from choreo_workflow_inbox"), 0, "kept events left")


@suite.test
def changed_code_is_refused_by_a_reload_stuck_after_a_restart_and_resumed_when_fixed(w):
    orders, warehouse = two_hosts(w)
    warehouse.stop()  # the call waits: the instance is suspended in step 1
    orders.cli("start", "Fulfilment", "1", '{"order": 1}')
    wait_until(lambda: statuses(orders).get("running") == 1, 20, "the instance to wait")
    changed = orders_lua().replace('"ReserveStock"', '"HoldStock"')
    why = ("step 1: the history records 'call warehouse ReserveStock' but the code now does "
           "'call warehouse HoldStock'")
    # A hot reload is checked against the running instance's history, and refused.
    mark = orders.log_mark()
    with open(orders.scripts + "/orders.lua", "w") as f:
        f.write(changed)
    orders.wait_log(r"reload rejected, keeping generation 1: workflow Fulfilment 1 would be "
                    r"stuck: " + re.escape(why), since=mark)
    check(why in orders.cli("status").out, "status shows the refused reload")
    # The same check offline, as CI would run it, on a copy of the running host's database.
    out = w.cli("replay-check", orders.scripts, "--data", orders.data)
    check(out.rc == 1 and "workflow Fulfilment 1 would be stuck: " + why in out.err,
          "replay-check of the changed code: %r" % out)
    # A restart does not check: the instance gets stuck when its reply replays it.
    orders.stop()
    orders.start()
    warehouse.start()  # its reply replays the instance against the new code
    wait_until(lambda: statuses(orders).get("stuck") == 1, 20, "the instance to be stuck")
    st = json.loads(orders.cli("status", "--json").out)
    check_eq((st["workflows_running"], st["workflows_stuck"]), (0, 1), "status --json")
    check(re.search(r"^workflows\s+0 running, 1 stuck$", orders.cli("status").out, re.M),
          "status text")
    out = orders.cli("workflows", "list", "--status", "stuck")
    check("step 1: the history records 'call warehouse ReserveStock' but the code now does "
          "'call warehouse HoldStock'" in out.out, out.out)
    mark = orders.log_mark()
    with open(orders.scripts + "/orders.lua", "w") as f:
        f.write(orders_lua())
    orders.wait_log("scripts reloaded", since=mark)
    orders.wait_log("resuming 1 stuck workflow instances under the new code", since=mark)
    wait_until(lambda: statuses(orders).get("completed") == 1, 20,
               "the fixed reload to resume the instance, and it to complete")
    out = w.cli("replay-check", orders.scripts, "--data", orders.data)
    check_eq(out.rc, 0, "replay-check of the fixed code: %r" % out)
    check_eq(set(emitted(orders, "ReserveStock").values()), {1}, "ReserveStock sent once")


APPROVALS_LUA = """
local choreo = require "choreo"
choreo.workflow("Approval", function(wf, input)
  local decision
  wf:signal_handler("decide", function(data) decision = data.approved end)
  wf:compensate(function() wf:publish("ApprovalWithdrawn", { doc = input.doc }) end)
  wf:await(function() return decision ~= nil end)
  return decision and "approved" or "rejected"
end)
"""


@suite.test
def signals_and_cancellation_from_the_cli_across_a_restart(w):
    host = w.host("approvals", w.scripts("approvals", {"approvals.lua": APPROVALS_LUA}))
    for doc in ("a", "b"):
        check_eq(host.cli("start", "Approval", doc, json.dumps({"doc": doc})).rc, 0, "start " + doc)
    wait_until(lambda: statuses(host).get("running") == 2, 20, "both to wait")
    host.kill9()  # the signal finds no coroutine in memory: the instance is replayed first
    host.start()
    out = host.cli("signal", "Approval", "a", "decide", '{"approved": true}')
    check(out.rc == 0 and out.out.startswith("signal of Approval a sent as approvals/"), out)
    out = host.cli("workflows", "cancel", "Approval", "b", "no longer needed")
    check(out.rc == 0 and out.out.startswith("cancel of Approval b sent as"), out)
    wait_until(lambda: statuses(host) == {"completed": 1, "cancelled": 1}, 20,
               "one approved, one cancelled")
    shown = json.loads(host.cli("workflows", "--json", "show", "Approval", "a").out)
    check_eq(shown["result"], "approved", "the signalled instance's result")
    out = host.cli("workflows", "list", "--status", "cancelled")
    check(re.search(r"^Approval\s+b\s+cancelled\s+.*cancelled: no longer needed", out.out, re.M),
          out.out)
    check_eq(len(emitted_types(host, "ApprovalWithdrawn")), 1, "compensation of the cancelled one")
    out = host.cli("signal", "Approval", "a", "decide", "{bad")
    check_eq(out.rc, 2, "a signal with bad JSON")
    out = host.cli("signal", "Approval", "a")
    check_eq(out.rc, 2, "a signal without its name")


def emitted_types(host, type_):
    return host.query("select seq from choreo_log where type = ?", type_)


@suite.test
def retention_deletes_ended_instances_and_keeps_running_ones(w):
    warehouse = w.host("warehouse", w.scripts("warehouse", {"warehouse.lua": WAREHOUSE_LUA}))
    orders = w.host("orders", w.scripts("orders", {"orders.lua": orders_lua(3600)}),
                    extra=["--retain", "1s", "--retain-max", "2s"])
    orders.cli("start", "Fulfilment", "1", '{"order": 1}')
    orders.cli("start", "Fulfilment", "4", '{"order": 4}')  # no payment comes: it waits
    wait_until(lambda: statuses(orders) == {"completed": 1, "running": 1}, 20,
               "one instance to complete and one to wait")
    orders.wait_log(r"retention deleted 1 workflow instances that ended over 2s ago", timeout=30)
    check_eq(statuses(orders), {"running": 1}, "instances left")
    check_eq(orders.scalar("select count(*) from choreo_workflow_history where id = '1'"), 0,
             "history of the deleted instance")
    check(orders.scalar("select count(*) from choreo_workflow_history where id = '4'") >= 2,
          "history of the running instance")
    check_eq(warehouse.scalar("select count(*) from reserved"), 2, "reservations")


if __name__ == "__main__":
    suite.main()
