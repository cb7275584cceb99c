"""Metrics on a real host (`choreo run --metrics`): the page is valid Prometheus text format and
counts what happened (handled, failed, dead and unhandled messages per type, handler time
histograms, batches, dead letters, reloads); it answers while a handler holds the loop; only GET
/metrics is served, a bare port listens on loopback only, and bad or taken addresses are clear
errors."""
import os
import re
import urllib.error
import urllib.request

import harness
from harness import Suite, check, check_eq, wait_until

suite = Suite("metrics")

SERVICE_LUA = """
local choreo = require "choreo"
choreo.db:exec("create table if not exists done(n integer)")
choreo.on("Ok", function(msg, ctx) ctx.db:exec("insert into done values (1)") end)
choreo.on("Fail", function(msg, ctx) error("no good") end, { attempts = 1, backoff = {} })
-- Holds the loop until the test lets it go (a file appears), for as long as it takes.
choreo.on("Hold", function(msg, ctx)
  local f = io.open(msg.data.started, "w") f:close()
  while not io.open(msg.data.release) do end
  ctx.db:exec("insert into done values (2)")
end)
"""

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? '
                    r'(-?[0-9.eE+-]+|\+Inf|NaN)$')


def get(port, path="/metrics", method="GET"):
    """(status, body) of one request to the host's metrics server."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def parse(page):
    """{(name, labels text): value}, checking the format: every sample line well formed and of
    a family announced once with HELP and TYPE before it."""
    samples, families = {}, {}
    for line in page.splitlines():
        m = re.match(r"^# (HELP|TYPE) (\S+) (.+)$", line)
        if m:
            families.setdefault(m.group(2), []).append(m.group(1))
            continue
        s = SAMPLE.match(line)
        check(s is not None, "malformed sample line %r" % line)
        name = s.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
        check(families.get(family) == ["HELP", "TYPE"], "family of %r announced once: %r"
              % (line, families.get(family)))
        samples[(name, s.group(2) or "")] = float(s.group(5))
    return samples


def value(samples, name, labels=""):
    return samples.get((name, labels))


def start(w, extra=()):
    port = harness.free_port_pair()
    host = w.host("svc", w.scripts("svc", {"svc.lua": SERVICE_LUA}),
                  extra=["--metrics", str(port), "--instructions", "100000000000", *extra])
    return host, port


@suite.test
def the_page_counts_what_happened(w):
    host, port = start(w)
    for _ in range(3):
        host.send("svc", "Ok")
    host.send("svc", "Fail")
    host.send("svc", "Nope")

    def counted():
        samples = parse(get(port)[1])
        return samples if value(samples, "choreo_messages_handled_total", '{type="Ok"}') == 3 and \
            value(samples, "choreo_dead_letters") == 1 else None
    wait_until(counted, 20, "the page to count the messages")
    samples = counted()
    check_eq(value(samples, "choreo_messages_failed_total", '{type="Fail"}'), 1, "failed")
    check_eq(value(samples, "choreo_messages_dead_total", '{type="Fail"}'), 1, "dead")
    check_eq(value(samples, "choreo_messages_handled_total", '{type="Fail"}'), 0, "Fail handled")
    check_eq(value(samples, "choreo_messages_unhandled_total", '{type="Nope"}'), 1, "unhandled")
    check_eq(value(samples, 'choreo_info', '{service="svc",version="0.1.0"}'), 1, "info")
    for t, count in (("Ok", 3), ("Fail", 1)):
        buckets = sorted((float(m.group(1).replace("+Inf", "inf")), v)
                         for (n, l), v in samples.items()
                         if n == "choreo_handler_duration_seconds_bucket"
                         for m in [re.search(r'type="%s",le="([^"]+)"' % t, l)] if m)
        check(len(buckets) == 13, "13 buckets for %s: %r" % (t, buckets))
        check(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "cumulative: %r" % buckets)
        check_eq(buckets[-1][1], count, "+Inf bucket of %s" % t)
        check_eq(value(samples, "choreo_handler_duration_seconds_count", '{type="%s"}' % t), count,
                 "histogram count of %s" % t)
        check(value(samples, "choreo_handler_duration_seconds_sum", '{type="%s"}' % t) > 0,
              "histogram sum of %s" % t)
    check(value(samples, "choreo_batch_messages_count") >= 1, "batches counted")
    check_eq(value(samples, "choreo_batch_messages_sum"), 4, "messages in committed batches")
    check(value(samples, "choreo_lua_memory_bytes") > 0, "Lua memory")
    check(value(samples, "choreo_log_head_seq") >= 0, "log head")

    with w.step("a reload is counted"):
        with open(os.path.join(host.scripts, "svc.lua"), "a") as f:
            f.write("\n-- touched\n")
        host.wait_log(r"reloaded")
        wait_until(lambda: value(parse(get(port)[1]), "choreo_reloads_total") == 1, 20,
                   "the reload to be counted")
        samples = parse(get(port)[1])
        check_eq(value(samples, "choreo_scripts_generation"), 2, "generation")
        check(value(samples, "choreo_last_reload_duration_seconds") > 0, "reload duration")


@suite.test
def a_scrape_never_waits_for_the_loop(w):
    host, port = start(w)
    started, release = os.path.join(w.dir, "started"), os.path.join(w.dir, "release")
    host.send("svc", "Hold", {"started": started, "release": release})
    wait_until(lambda: os.path.exists(started), 20, "the handler to hold the loop")
    status, page = get(port)
    check_eq(status, 200, "a scrape while a handler holds the loop")
    check("choreo_info" in page, page[:200])
    check_eq(host.scalar("select count(*) from done"), 0, "the handler is still holding")
    open(release, "w").close()
    wait_until(lambda: host.scalar("select count(*) from done") == 1, 20, "the handler to end")


@suite.test
def only_get_metrics_on_loopback(w):
    host, port = start(w)
    check_eq(get(port)[0], 200, "GET /metrics")
    check_eq(get(port, method="POST")[0], 405, "POST /metrics")
    check_eq(get(port, method="DELETE")[0], 405, "DELETE /metrics")
    check_eq(get(port, "/")[0], 404, "GET /")
    check_eq(get(port, "/query/x")[0], 404, "GET /query/x")
    with open("/proc/net/tcp") as f:
        listening = [line.split()[1] for line in f.readlines()[1:] if line.split()[3] == "0A"]
    check("0100007F:%04X" % port in listening, "a bare port listens on 127.0.0.1: %r" % listening)
    check("00000000:%04X" % port not in listening, "and not on every interface")


@suite.test
def bad_addresses_are_clear_errors(w):
    scripts = w.scripts("svc", {"svc.lua": SERVICE_LUA})
    for given, message in (("ftp://127.0.0.1:1", "expected http://HOST:PORT or a port"),
                           ("nonsense", "expected http://HOST:PORT or a port")):
        out = w.cli("run", scripts, "--bus", w.bus, "--data", os.path.join(w.dir, "x.db"),
                    "--metrics", given, timeout=20)
        check(out.rc not in (0, None), "--metrics %s: %r" % (given, out))
        check(message in out.err, "--metrics %s: %r" % (given, out.err))
    host, port = start(w)
    out = w.cli("run", scripts, "--name", "other", "--bus", w.bus, "--data",
                os.path.join(w.dir, "y.db"), "--metrics", str(port), timeout=20)
    check(out.rc not in (0, None), "a port in use: %r" % out)
    check("--metrics %d: Address in use" % port in out.err, out.err)


if __name__ == "__main__":
    suite.main()
