"""`choreo ui` on real hosts, read by a real browser: the API answers what the CLI prints (hosts,
map, conversations, a trace), refuses what it does not serve, and the page, loaded in headless
Chromium, shows every host, the map's services and edges, the recent conversations and every
hop of one order's trace."""
import html.parser
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request

import harness
from harness import Suite, check, check_eq, wait_until
from test_trace import BILLING_LUA, SHOP_LUA, STOCK_LUA, checkout

suite = Suite("ui")


def get(port, path, method="GET"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start_ui(w):
    port = harness.free_port_pair()
    log = open(os.path.join(w.dir, "ui.log"), "w")
    w.spawn([harness.CHOREO, "ui", "--bus", w.bus, "--listen", str(port)], stdout=log,
            stderr=subprocess.STDOUT)
    wait_until(lambda: get(port, "/")[0] == 200 if _listening(port) else False, 20, "the ui")
    return port


def _listening(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


class Elements(html.parser.HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def all(self, tag, cls=None):
        return [a for t, a in self.found if t == tag and (cls is None or cls in a.get("class", "").split())]


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--password-store=basic",
    "--use-mock-keychain", "--enable-logging=stderr", "--v=0",
]


def browse(w, url):
    """The page's DOM once its scripts ran, as headless Chromium renders it. Chromium's helper
    processes outlive it holding its output: the DOM goes to a file, and its process group is
    killed after. Its own log goes with a failure."""
    chromium = shutil.which("chromium")
    check(chromium is not None, "chromium is needed (.ci/run installs Debian's)")
    path, log = os.path.join(w.dir, "dom.html"), os.path.join(w.dir, "chromium.log")
    with open(path, "w") as dom, open(log, "w") as err:
        p = subprocess.Popen([chromium, *CHROMIUM_FLAGS,
                              "--user-data-dir=" + os.path.join(w.dir, "chromium"),
                              "--virtual-time-budget=15000", "--dump-dom", url],
                             stdout=dom, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=60 * harness.SLOW)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    if rc != 0:
        with open(log) as f:
            chromium_log = f.read()[-3000:]
        with open(os.path.join(w.dir, "ui.log")) as f:
            ui_log = f.read()[-1000:]
        check(False, "chromium %s for %s\n--- chromium's log:\n%s\n--- choreo ui's log:\n%s"
              % ("did not finish within 60 s" if rc is None else "exited with %s" % rc, url,
                 chromium_log, ui_log))
    with open(path) as f:
        text = f.read()
    page = Elements()
    page.feed(text)
    return page, text


@suite.test
def the_page_shows_the_bus_and_one_orders_trace(w):
    shop = w.host("shop", w.scripts("shop", {"shop.lua": SHOP_LUA}))
    w.host("stock", w.scripts("stock", {"stock.lua": STOCK_LUA}))
    billing = w.host("billing", w.scripts("billing", {"billing.lua": BILLING_LUA}))
    first = checkout(shop, 1)
    checkout(shop, 2)
    wait_until(lambda: shop.scalar("select count(*) from ready") == 2, 20, "two orders")
    port = start_ui(w)

    with w.step("the API answers what the CLI prints"):
        status, body = get(port, "/api/hosts")
        check_eq(status, 200, "hosts")
        hosts = json.loads(body)["hosts"]
        check_eq(sorted(h["name"] for h in hosts if "answer" in h), ["billing", "shop", "stock"],
                 "hosts that answered")
        status, body = get(port, "/api/trace?id=" + first)
        check_eq(status, 200, "trace")
        cli = json.loads(w.cli("trace", "--bus", w.bus, "--json", first).out)
        check_eq([m["id"] for m in json.loads(body)["messages"]], [m["id"] for m in cli["messages"]],
                 "the page's trace is the CLI's")
        status, body = get(port, "/api/map?since=1h")
        check_eq(status, 200, "map")
        edges = {(e["from"], e["to"], e["type"]) for e in json.loads(body)["edges"]}
        check(("stock", "billing", "Charge") in edges, edges)
        status, body = get(port, "/api/conversations")
        check_eq(status, 200, "conversations")
        mine = [c for c in json.loads(body)["conversations"] if c["correlation"] == first]
        check_eq(len(mine), 1, "the first order among the conversations")
        check_eq(sorted(mine[0]["hosts"]), ["billing", "shop", "stock"], "its hosts")

    with w.step("and refuses what it does not serve"):
        check_eq(get(port, "/api/hosts", "POST")[0], 405, "POST")
        check_eq(get(port, "/api/nope")[0], 404, "an unknown path")
        check_eq(get(port, "/nope.html")[0], 404, "an unknown file")
        status, body = get(port, "/api/trace")
        check_eq(status, 400, "a trace without an id")
        status, body = get(port, "/api/trace?id=nobody%2F99")
        check_eq(status, 404, "an unknown conversation")
        check("no host that answered knows nobody/99" in body, body)
        check_eq(get(port, "/api/trace?id=%00")[0], 400, "an escaped NUL")
        check_eq(get(port, "/api/map?since=forever")[0], 400, "a bad window")

    with w.step("the page in a real browser"):
        page, dom = browse(w, "http://127.0.0.1:%d/#trace=%s" % (port, first))
        states = {a["id"]: a.get("data-state") for t, a in page.found if t == "section"}
        check_eq(states, {"hosts": "ready", "map": "ready", "conversations": "ready",
                          "trace": "ready"}, "every part drawn")
        check_eq(sorted(a["data-host"] for a in page.all("tr", "host")), ["billing", "shop", "stock"],
                 "a row per host")
        check_eq(sorted(a["data-name"] for a in page.all("g", "node")), ["billing", "shop", "stock"],
                 "a node per service on the map")
        drawn = {(a["data-from"], a["data-to"], a["data-type"]) for a in page.all("g", "edge")}
        check_eq(drawn, edges, "the map's edges are the API's")
        hops = [(a["data-type"], a["data-host"], a["data-outcome"]) for a in page.all("tr", "hop")]
        check_eq(hops, [("Checkout", "shop", "ok"), ("OrderPlaced", "stock", "ok"),
                        ("Charge", "billing", "ok"), ("Charged", "stock", "ok"),
                        ("OrderReady", "shop", "ok")], "every hop of the order, in causal order")
        links = [a["data-id"] for a in page.all("a") if "data-id" in a]
        check(first in links, "the order among the recent conversations: %r" % links)
        check(re.search(r"Charge ×3, 1 failed", dom), "an edge's label, with its failures")

    with w.step("a host that does not answer is shown as such"):
        billing.kill9()
        page, dom = browse(w, "http://127.0.0.1:%d/" % port)
        down = [a["data-host"] for a in page.all("tr", "down")]
        check_eq(down, ["billing"], "the killed host's row")


@suite.test
def hosts_of_other_machines_with_peer(w):
    """A host on a bus of its own, as on another machine; the page's process has no bus."""
    p_shop = harness.free_port_pair()
    bus = os.path.join(w.dir, "elsewhere")
    os.makedirs(bus)
    shop = w.host("shop", w.scripts("shop", {"shop.lua": SHOP_LUA}), bus=bus,
                  extra=["--listen", "tcp://127.0.0.1:%d" % p_shop])
    first = checkout(shop, 9)  # sets a timer, emits nothing
    port = harness.free_port_pair()
    w.spawn([harness.CHOREO, "ui", "--bus", os.path.join(w.dir, "no-bus"), "--listen", str(port),
             "--peer", "tcp://127.0.0.1:%d" % p_shop], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
    wait_until(lambda: _listening(port), 20, "the ui")
    status, body = get(port, "/api/hosts")
    check_eq(status, 200, "hosts")
    check_eq([(h["name"], "answer" in h) for h in json.loads(body)["hosts"]], [("shop", True)],
             "the peer, by its name")
    status, body = get(port, "/api/trace?id=" + first)
    check_eq(status, 200, "a trace of the peer's conversation: %s" % body)
    check_eq([m["type"] for m in json.loads(body)["messages"]], ["Checkout"], "its message")


@suite.test
def bad_listen_addresses(w):
    out = w.cli("ui", "--bus", w.bus, "--listen", "ftp://127.0.0.1:1")
    check_eq(out.rc, 2, "a bad --listen: %r" % out)
    check("expected http://HOST:PORT or a port" in out.err, out.err)
    out = w.cli("ui", "--bus", w.bus, "--port", "1")
    check_eq(out.rc, 2, "an unknown option: %r" % out)
    port = start_ui(w)
    out = w.cli("ui", "--bus", w.bus, "--listen", str(port), timeout=20)
    check_eq(out.rc, 1, "a port in use: %r" % out)
    check("Address in use" in out.err, out.err)


if __name__ == "__main__":
    suite.main()
