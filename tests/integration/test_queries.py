"""Queries on a running host: `choreo query` over the control socket and GET/POST over --http,
answered between batches while messages keep flowing, read-only, with clear errors; a stop with
requests in flight ends cleanly."""
import json
import threading
import time
import urllib.error
import urllib.request

import harness
from harness import Suite, check, check_eq, wait_until

suite = Suite("queries")

LEDGER = """
local choreo = require "choreo"
choreo.db:exec("create table if not exists entries(account text, amount integer)")
choreo.on("Entry", function(msg, ctx)
  ctx.db:exec("insert into entries values (?, ?)", msg.data.account, msg.data.amount)
end)
choreo.on("Many", function(msg, ctx)
  for i = 1, msg.data.n do ctx:publish("Entry", { account = msg.data.account, amount = 1 }) end
end)
choreo.query("balance", function(args, db)
  local row = db:one("select coalesce(sum(amount), 0) as balance, count(*) as n from entries where account = ?",
                     args.account)
  return { account = args.account, balance = row.balance, entries = row.n }
end)
choreo.query("wipe", function(_, db) db:exec("delete from entries") end)
choreo.query("forever", function() while true do end end)
"""


def http(port, path, body=None, method=None):
    """(status, parsed JSON body) of one request."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=body.encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10 * harness.SLOW) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@suite.test
def queries_over_the_cli_and_http(w):
    port = harness.free_port_pair()
    host = w.host("ledger", w.scripts("ledger", {"ledger.lua": LEDGER}),
                  extra=["--http", "http://127.0.0.1:%d" % port, "--instructions", "1000000"])
    host.publish("Entry", {"account": "a b", "amount": 5})
    host.publish("Entry", {"account": "a b", "amount": 7})
    wait_until(lambda: host.scalar("select count(*) from entries") == 2, 20, "two entries")
    want = {"account": "a b", "balance": 12, "entries": 2}
    with w.step("choreo query"):
        out = host.cli("query", "balance", '{"account": "a b"}')
        check_eq((out.rc, json.loads(out.out)), (0, want), "answer")
        out = host.cli("query", "nope")
        check_eq(out.rc, 1, "an unknown query's exit code")
        check("no query named 'nope'" in out.err, out.err)
        out = host.cli("query", "balance", "{bad")
        check_eq(out.rc, 2, "arguments that are not JSON")
    with w.step("GET with arguments in the URL, POST with a JSON body"):
        check_eq(http(port, "/query/balance?account=a+b"), (200, want), "GET")
        check_eq(http(port, "/query/balance?account=a%20b"), (200, want), "GET, %-escaped")
        check_eq(http(port, "/query/balance", '{"account": "a b"}'), (200, want), "POST")
    with w.step("errors: unknown query or path, bad arguments, a failing or refused query"):
        check_eq(http(port, "/query/nope")[0], 404, "unknown query")
        check_eq(http(port, "/elsewhere")[0], 404, "unknown path")
        check_eq(http(port, "/query/balance", "{bad")[0], 400, "a body that is not JSON")
        check_eq(http(port, "/query/balance?account=%zz")[0], 400, "a bad escape")
        check_eq(http(port, "/query/balance", method="DELETE")[0], 405, "another method")
        status, body = http(port, "/query/wipe")
        check_eq(status, 500, "a query that writes")
        check("a query may only read" in body["error"], body)
        status, body = http(port, "/query/forever")
        check_eq(status, 500, "a query past its budget")
        check("instruction limit" in body["error"], body)
        check_eq(host.scalar("select count(*) from entries"), 2, "entries after the refused write")
    with w.step("queries answered between batches while 20,000 messages are handled"):
        host.publish("Many", {"account": "c", "n": 20000})
        seen = []
        while len(seen) < 200:
            status, body = http(port, "/query/balance?account=c")
            check_eq(status, 200, "status under load")
            seen.append(body["balance"])
            if body["balance"] == 20000:
                break
        check(seen == sorted(seen), "balances only grow (whole batches): %r" % seen[:20])
        wait_until(lambda: http(port, "/query/balance?account=c")[1]["balance"] == 20000, 30,
                   "all 20,000 entries")


@suite.test
def a_stop_with_http_requests_in_flight_is_clean(w):
    port = harness.free_port_pair()
    host = w.host("ledger", w.scripts("ledger", {"ledger.lua": LEDGER}),
                  extra=["--http", "http://127.0.0.1:%d" % port])
    statuses, stop = [], threading.Event()

    def ask():
        while not stop.is_set():
            try:
                statuses.append(http(port, "/query/balance?account=x")[0])
            except (OSError, ValueError):
                statuses.append("refused")  # the server is gone
    askers = [threading.Thread(target=ask) for _ in range(4)]
    for t in askers:
        t.start()
    time.sleep(1.0)
    start = time.monotonic()
    status = host.stop(grace=20)
    stop.set()
    for t in askers:
        t.join(30)
    check_eq(status, 0, "exit status on SIGTERM (log: %s)" % host.log_tail(3))
    check(time.monotonic() - start < 10, "stopped within 10 s")
    check(statuses.count(200) > 10, "answers before the stop: %d" % statuses.count(200))
    check(set(statuses) <= {200, 503, "refused"}, "only answers, 503 or refusal: %r" % set(statuses))


if __name__ == "__main__":
    suite.main()
