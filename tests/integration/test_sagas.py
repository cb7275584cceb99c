"""Sagas on a real host: state and durable timeouts survive kill -9; timeouts that came due
while the host was down fire right after it starts, once; `choreo sagas list|show` show them."""
import json
import os
import re
import time

from harness import Suite, check, check_eq, wait_until

suite = Suite("sagas")

SAGA_LUA = """
local choreo = require "choreo"
choreo.db:exec("create table if not exists fired(order_id integer, at real)")
choreo.saga("Payment", {
  starts = { "OrderPlaced" },
  correlate = { OrderPlaced = "order", PaymentCaptured = "order" },
  on = {
    OrderPlaced = function(state, msg, ctx)
      state.total = msg.data.total
      ctx:timeout(msg.data.wait, "PaymentOverdue", { order = msg.data.order })
    end,
    PaymentCaptured = function(state, msg, ctx) ctx:complete() end,
    PaymentOverdue = function(state, msg, ctx)
      ctx.db:exec("insert into fired values (?, ?)", msg.data.order, choreo.now())
      ctx:publish("OrderCancelled", { order = msg.data.order })
      ctx:complete()
    end,
  },
})
"""


def fired(host, order=None):
    if order is None:
        return host.scalar("select count(*) from fired")
    return host.scalar("select count(*) from fired where order_id = ?", order)


@suite.test
def timeouts_survive_kill_9_and_fire_once(w):
    host = w.host("shop", w.scripts("shop", {"shop.lua": SAGA_LUA}))
    for order in range(1, 6):
        host.publish("OrderPlaced", {"order": order, "total": order * 10, "wait": 2})
    host.publish("OrderPlaced", {"order": 99, "total": 1, "wait": 3600})
    host.publish("PaymentCaptured", {"order": 5})
    wait_until(lambda: host.scalar("select count(*) from choreo_sagas") == 5, 20,
               "five running instances")
    check_eq(host.scalar("select count(*) from choreo_timeouts"), 5, "pending timeouts")
    host.kill9()
    time.sleep(2.5)  # the 2 s timeouts come due while the host is down
    host.start()
    wait_until(lambda: fired(host) == 4, 20, "the overdue timeouts to fire after the restart")
    time.sleep(1.0)
    for order in range(1, 5):
        check_eq(fired(host, order), 1, "times the timeout of order %d fired" % order)
    check_eq(fired(host, 5), 0, "a completed instance's timeout never fires")
    check_eq(host.scalar("select count(*) from choreo_sagas"), 1, "instances left (order 99)")
    check_eq(host.scalar("select count(*) from choreo_timeouts"), 1, "timeouts left (order 99)")
    out = host.cli("sagas", "list")
    check_eq(out.rc, 0, "sagas list exit code")
    check("Payment  99" in out.out, "sagas list shows the running instance: %r" % out.out)
    out = host.cli("sagas", "show", "Payment", "99")
    check_eq(out.rc, 0, "sagas show exit code")
    check('"total"' in out.out and "1" in out.out, "sagas show prints the state: %r" % out.out)
    out = host.cli("sagas", "show", "Payment", "nope")
    check_eq(out.rc, 1, "sagas show of a missing instance fails")
    out = host.cli("status", "--json")
    check_eq(out.rc, 0, "status --json exit code")
    st = json.loads(out.out)
    check_eq((st["sagas_running"], st["timeouts_pending"], st["retries_pending"]), (1, 1, 0),
             "instances, timeouts and retries in status --json")
    check(st["uptime_s"] > 0 and st["name"] == "shop", "status --json: %r" % st)
    check(st["handled"] >= 4, "handled since the restart (the four timeouts): %r" % st)
    rate = wait_until(lambda: json.loads(host.cli("status", "--json").out)["handled_per_s"], 10,
                      "a rate over the last minute")
    check(rate > 0, "handled per second: %r" % rate)
    check(re.search(r"^sagas\s+1 running$", host.cli("status").out, re.M), "status text")


@suite.test
def kill_9_in_the_middle_of_many_timeouts(w):
    host = w.host("shop", w.scripts("shop", {"shop.lua": SAGA_LUA}))
    n = 300
    for start in range(0, n, 100):
        batch = [json.dumps({"order": i, "total": i, "wait": 1}) for i in range(start, start + 100)]
        # one control request per event keeps this simple; 300 are quick
        for data in batch:
            host.cli("publish", "OrderPlaced", data)
    wait_until(lambda: host.scalar("select count(*) from choreo_timeouts") +
               fired(host) == n, 30, "all instances to start")
    wait_until(lambda: fired(host) > 0, 20, "the first timeouts to fire")
    host.kill9()
    host.start()
    wait_until(lambda: fired(host) == n, 30, "every timeout to fire")
    time.sleep(1.0)
    check_eq(host.scalar("select count(*) from (select order_id from fired group by order_id having count(*) > 1)"),
             0, "timeouts that fired twice")
    check_eq(host.scalar("select count(*) from choreo_sagas"), 0, "instances left")


@suite.test
def reload_keeps_instances_and_timeouts(w):
    scripts = w.scripts("shop", {"shop.lua": SAGA_LUA})
    host = w.host("shop", scripts)
    host.publish("OrderPlaced", {"order": 1, "total": 10, "wait": 3})
    wait_until(lambda: host.scalar("select count(*) from choreo_timeouts") == 1, 20,
               "the instance and its timeout")
    mark = host.log_mark()
    # New code: the overdue handler records a different marker (negative order ids).
    with open(os.path.join(scripts, "shop.lua"), "w") as f:
        f.write(SAGA_LUA.replace('msg.data.order, choreo.now()', '-msg.data.order, choreo.now()'))
    host.wait_log("scripts reloaded", since=mark)
    check_eq(host.scalar("select count(*) from choreo_sagas"), 1, "instances after the reload")
    check_eq(host.scalar("select count(*) from choreo_timeouts"), 1, "timeouts after the reload")
    wait_until(lambda: fired(host) == 1, 20, "the timeout to fire under the new code")
    check_eq(fired(host, -1), 1, "the new code handled the old instance's timeout")


if __name__ == "__main__":
    suite.main()
