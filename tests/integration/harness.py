"""Shared helpers for choreo's multi-process integration tests (tests/integration/test_*.py).

Each test file is a standalone script run as `python3 test_x.py /path/to/choreo [TEST...]`
(ctest passes the binary; CHOREO_POKE names the choreo_poke helper). A file builds a Suite,
registers its cases with @suite.test and calls suite.main(), which runs them in order, prints
"PASS"/"FAIL" per case and a closing "N passed, M failed" line, and exits non-zero on failure.

Every case gets a World: a private temporary directory with its own bus directory, in which it
starts hosts (real `choreo run` processes) and runs the command line. Everything a World starts
is killed when the case ends (SIGTERM, then SIGKILL), and again at exit, and the hosts die with
the test process if that is killed (PR_SET_PDEATHSIG). Waiting is always polling with a bound:
wait_until(predicate, timeout). Timeouts are multiplied by SLOW for sanitizer builds.

Standard library only. Set CHOREO_IT_KEEP=1 to keep the temporary directories of failed cases
(CHOREO_IT_KEEP=all: of every case).
"""
import atexit
import ctypes
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(SOURCE, "examples")

CHOREO = None  # the binary under test, set by Suite.main()
POKE = None    # choreo_poke, if built
SLOW = 1.0     # timeout multiplier: sanitizer builds run several times slower
SANITIZED = False  # a sanitizer build: its memory (shadow, quarantine) says nothing of ours

_all_procs = []  # every Popen any World started, for the atexit safety net


# ---------------------------------------------------------------------------------------------
# Small utilities

class TestFailure(AssertionError):
    pass


def check(cond, message):
    """assert that survives python -O and says what was expected."""
    if not cond:
        raise TestFailure(message)


def check_eq(actual, expected, what):
    if actual != expected:
        raise TestFailure("%s: expected %r, got %r" % (what, expected, actual))


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns a truthy value, which is returned. Raises TestFailure
    naming `what` (and the last value seen) when `timeout` seconds (times SLOW) pass first.
    Exceptions from the predicate other than TestFailure count as "not yet"."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except TestFailure:
            raise
        except Exception as e:  # e.g. sqlite "database is locked", table not created yet
            last = "%s: %s" % (type(e).__name__, e)
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.0fs waiting for %s (last: %r)"
                              % (timeout * SLOW, what, last))
        time.sleep(interval)


def free_port_pair():
    """A loopback TCP port P such that P and P+1 are both free (choreo serves PUB on P and
    FETCH on P+1), picked below the kernel's ephemeral range: a host dialing a peer that is not
    listening yet takes a new ephemeral port at every attempt, and one of those could be the
    port the next host is about to listen on. There is still a window before the host binds;
    good enough on a test machine."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    low = max(1024, min(20000, ephemeral - 10000))
    for _ in range(200):
        port = random.randrange(low, ephemeral - 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise TestFailure("no free pair of loopback ports")


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: hosts must not outlive a test process killed by ctest's timeout.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def kill_proc(proc, grace=5.0):
    """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace * SLOW)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    return proc.returncode


@atexit.register
def _kill_everything():
    for p in _all_procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass


# ---------------------------------------------------------------------------------------------
# msgpack (just what frames and messages need; see runtime/codec.h)

def mp_pack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v < 2 ** 64:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        if len(v) < 32:
            return bytes([0xA0 | len(v)]) + v
        return b"\xdb" + struct.pack(">I", len(v)) + v
    if isinstance(v, (list, tuple)):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(mp_pack(x) for x in v)
    if isinstance(v, dict):
        return b"\xdf" + struct.pack(">I", len(v)) + b"".join(
            mp_pack(k) + mp_pack(x) for k, x in v.items())
    raise TypeError(type(v))


def mp_unpack(buf):
    """Decodes one msgpack object from bytes; returns (value, bytes used)."""
    def one(i):
        b = buf[i]
        i += 1
        if b <= 0x7F:
            return b, i
        if b >= 0xE0:
            return b - 256, i
        if 0x80 <= b <= 0x8F:
            return mapn(b & 0x0F, i)
        if 0x90 <= b <= 0x9F:
            return arrn(b & 0x0F, i)
        if 0xA0 <= b <= 0xBF:
            return strn(b & 0x1F, i)
        if b == 0xC0:
            return None, i
        if b == 0xC2:
            return False, i
        if b == 0xC3:
            return True, i
        if b in (0xC4, 0xC5, 0xC6):
            w = 1 << (b - 0xC4)
            n = int.from_bytes(buf[i:i + w], "big")
            return bytes(buf[i + w:i + w + n]), i + w + n
        if b == 0xCA:
            return struct.unpack(">f", buf[i:i + 4])[0], i + 4
        if b == 0xCB:
            return struct.unpack(">d", buf[i:i + 8])[0], i + 8
        if 0xCC <= b <= 0xCF:
            w = 1 << (b - 0xCC)
            return int.from_bytes(buf[i:i + w], "big"), i + w
        if 0xD0 <= b <= 0xD3:
            w = 1 << (b - 0xD0)
            return int.from_bytes(buf[i:i + w], "big", signed=True), i + w
        if b in (0xD9, 0xDA, 0xDB):
            w = 1 << (b - 0xD9)
            return strn(int.from_bytes(buf[i:i + w], "big"), i + w)
        if b in (0xDC, 0xDD):
            w = 2 << (b - 0xDC)
            return arrn(int.from_bytes(buf[i:i + w], "big"), i + w)
        if b in (0xDE, 0xDF):
            w = 2 << (b - 0xDE)
            return mapn(int.from_bytes(buf[i:i + w], "big"), i + w)
        raise ValueError("unsupported msgpack byte 0x%02x" % b)

    def strn(n, i):
        return bytes(buf[i:i + n]).decode("utf-8", "replace"), i + n

    def arrn(n, i):
        out = []
        for _ in range(n):
            v, i = one(i)
            out.append(v)
        return out, i

    def mapn(n, i):
        out = {}
        for _ in range(n):
            k, i = one(i)
            v, i = one(i)
            out[k] = v
        return out, i

    return one(0)


# A message's keys are its attributes' numbers (runtime/core/codec.c, CODEC_K_*); the id is not
# written when it is "<source>/<seq>".
ATTRIBUTE_NAMES = {1: "id", 2: "source", 3: "type", 4: "time", 5: "subject", 6: "data", 7: "seq",
                   8: "kind", 9: "to", 10: "correlationid", 11: "causationid",
                   12: "traceparent", 13: "dataschema", 14: "streamversion",
                   15: "expectedversion"}


def decode_message(raw):
    """A stored or sent message as {attribute name: value}, as a host reads it: its id derived
    where left out, its time as RFC 3339 text where written as microseconds since the epoch."""
    m = {ATTRIBUTE_NAMES.get(k, k): v for k, v in mp_unpack(raw)[0].items()}
    m.setdefault("id", "%s/%d" % (m["source"], m["seq"]))
    if isinstance(m.get("time"), int):
        at = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=m["time"])
        m["time"] = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return m


def encode_message(source, seq, type_, kind="event", data=None, to=None):
    """As hosts wrote messages before 2026-12-03, with specversion and datacontenttype (since
    left out as constants): what peers send must still be read."""
    m = {"specversion": "1.0", "id": "%s/%d" % (source, seq), "source": source, "type": type_,
         "time": "2024-01-01T00:00:00.000000Z", "seq": seq, "kind": kind}
    if to is not None:
        m["to"] = to
    if data is not None:
        m["datacontenttype"] = "application/msgpack"
        m["data"] = data
    return mp_pack(m)


def encode_frame(source, first, messages, head=None):
    """A frame: header [version, source, first, count, head] and the encoded messages."""
    if head is None:
        head = first + len(messages) - 1
    return mp_pack([1, source, first, len(messages), head]) + b"".join(messages)


# ---------------------------------------------------------------------------------------------
# SQLite

def query(db, sql, *params):
    """Runs one query on a host's database and returns all rows. Opened read-only (the host
    keeps writing through WAL meanwhile), closed at once so no snapshot is held."""
    last = None
    for _ in range(50):
        try:
            con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
            try:
                return con.execute(sql, params).fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError as e:
            last = e
            if "no such table" in str(e) or "no such column" in str(e):
                raise
            time.sleep(0.05)
    raise last


def scalar(db, sql, *params):
    rows = query(db, sql, *params)
    return rows[0][0] if rows else None


# ---------------------------------------------------------------------------------------------
# Processes

class Result:
    def __init__(self, args, rc, out, err, secs):
        self.args, self.rc, self.out, self.err, self.secs = args, rc, out, err, secs

    def __repr__(self):
        return "choreo %s -> rc %s, stdout %r, stderr %r" % (
            " ".join(self.args), self.rc, self.out[-500:], self.err[-500:])


def run_cli(args, timeout=30, env=None):
    """Runs the choreo binary with args; returns a Result. A CLI that hangs past `timeout`
    (times SLOW) is killed and reported as rc None."""
    t0 = time.monotonic()
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        p = subprocess.run([CHOREO] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, errors="replace", timeout=timeout * SLOW, env=e)
        return Result(list(args), p.returncode, p.stdout, p.stderr, time.monotonic() - t0)
    except subprocess.TimeoutExpired as x:
        out = x.stdout.decode(errors="replace") if isinstance(x.stdout, bytes) else (x.stdout or "")
        err = x.stderr.decode(errors="replace") if isinstance(x.stderr, bytes) else (x.stderr or "")
        return Result(list(args), None, out, err, time.monotonic() - t0)


def parse_status(text):
    """`choreo status` output -> dict: 'generation', 'reload error', ... and 'peers', a dict
    name -> {'applied', 'head', 'fetched', 'fetches', 'lag', 'url', 'up', 'heard'} ('heard':
    seconds ago or None; 'fetched': how many of the applied came through FETCH rather than live;
    'fetches': the FETCH answers received)."""
    st = {"peers": {}}
    for line in text.splitlines():
        m = re.match(r"peer\s+(\S+)\s+applied (\d+) of (\d+) \((\d+) caught up by FETCH in "
                     r"(\d+) answers\), "
                     r"lag (\d+) \((.*)\); (up|down), "
                     r"(?:last heard ([\d.]+) s ago|never heard from)"
                     r"(?:, (\d+) gone before we got them \(last: (\d+) to (\d+)\))?$", line)
        if m:
            st["peers"][m.group(1)] = {"applied": int(m.group(2)), "head": int(m.group(3)),
                                       "fetched": int(m.group(4)), "fetches": int(m.group(5)),
                                       "lag": int(m.group(6)),
                                       "url": m.group(7), "up": m.group(8) == "up",
                                       "heard": float(m.group(9)) if m.group(9) else None,
                                       "gone": int(m.group(10) or 0),
                                       "gone range": (int(m.group(11)), int(m.group(12)))
                                       if m.group(11) else None}
            continue
        m = re.match(r"(\S+(?: \S+)?)\s{2,}(.*)$", line)
        if m:
            key, value = m.group(1), m.group(2)
            st[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return st


SANITIZER_PATTERNS = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer")


class Host:
    """One `choreo run` process. The log (stderr) of every start goes to one file."""

    def __init__(self, world, name, scripts, bus, data, extra):
        self.world, self.name, self.scripts, self.bus, self.data = world, name, scripts, bus, data
        self.extra = list(extra)
        self.log_path = os.path.join(world.dir, "%s.log" % name)
        self.proc = None
        self.starts = 0
        self.log_offset = 0  # where the current run's log starts
        self.env = {}  # added to the environment of the next starts

    def args(self):
        return ["run", self.scripts, "--name", self.name, "--bus", self.bus,
                "--data", self.data] + self.extra

    def start(self, wait=True):
        """Starts the host; with wait, returns once it answers `choreo status`. Tests should not
        read the database of a host that may still be opening it: a reader that happens to run
        WAL recovery after a kill -9 at that moment makes the host's first statement fail with
        "database is locked" (the store sets its busy timeout only after that statement)."""
        check(self.proc is None or self.proc.poll() is not None, "%s already running" % self.name)
        with open(self.log_path, "ab") as log:
            self.log_offset = log.tell()
            log.write(("----- start %d: choreo %s\n" % (self.starts + 1, " ".join(self.args())))
                      .encode())
            log.flush()
            self.proc = subprocess.Popen([CHOREO] + self.args(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, preexec_fn=_die_with_parent,
                                         env=dict(os.environ, CHOREO_LOG=self.world.log_level,
                                                  **self.env))
        self.starts += 1
        _all_procs.append(self.proc)
        self.world.procs.append(self.proc)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=20):
        def ready():
            if not self.alive():
                raise TestFailure("host %s exited with %s during start:\n%s"
                                  % (self.name, self.proc.returncode, self.log_tail()))
            return self.cli("status").rc == 0
        wait_until(ready, timeout, "host %s to answer status" % self.name, interval=0.1)

    def stop(self, grace=10):
        """SIGTERM and wait; SIGKILL if it does not stop within `grace` s. Returns the status."""
        if self.proc is None:
            return None
        return kill_proc(self.proc, grace)

    def kill9(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self, wait=True):
        self.stop()
        return self.start(wait)

    def log(self, whole=True):
        with open(self.log_path, "rb") as f:
            if not whole:
                f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def cli(self, sub, *args, timeout=30):
        """choreo SUB --bus BUS --host NAME ARGS..."""
        return run_cli([sub, "--bus", self.bus, "--host", self.name] + list(args), timeout=timeout)

    def status(self):
        r = self.cli("status")
        check(r.rc == 0, "status of %s failed: %r" % (self.name, r))
        return parse_status(r.out)

    def send(self, to, type_, data=None):
        r = self.cli("send", to, type_, *([json.dumps(data)] if data is not None else []))
        check(r.rc == 0, "send failed: %r" % r)
        return r

    def publish(self, type_, data=None):
        r = self.cli("publish", type_, *([json.dumps(data)] if data is not None else []))
        check(r.rc == 0, "publish failed: %r" % r)
        return r

    def query(self, sql, *params):
        return query(self.data, sql, *params)

    def scalar(self, sql, *params):
        return scalar(self.data, sql, *params)

    def head(self):
        return self.scalar("select coalesce(max(seq), 0) from choreo_log")

    def checkpoint(self, source):
        v = self.scalar("select seq from choreo_checkpoints where source = ?", source)
        return v or 0

    def log_mark(self):
        """Where the log ends now: pass it as wait_log(since=) to look only at what follows."""
        return len(self.log())

    def wait_log(self, pattern, timeout=20, whole=False, since=None):
        """Waits until the log (this run's, unless whole; or what follows the mark `since`)
        matches the regex; returns the match."""
        rx = re.compile(pattern)
        if since is not None:
            text = lambda: self.log()[since:]
        else:
            text = lambda: self.log(whole)
        def found():
            running = self.alive()
            m = rx.search(text())
            if not m and not running:
                raise TestFailure("host %s exited (status %s) before its log matched %r:\n%s"
                                  % (self.name, self.proc.returncode, pattern, self.log_tail(15)))
            return m
        return wait_until(found, timeout, "log of %s to match %r" % (self.name, pattern))


class _Step:
    def __init__(self, world, name):
        self.world, self.name = world, name

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None and not issubclass(kind, Exception):
            return False  # KeyboardInterrupt, SystemExit: stop everything
        error = None if kind is None else "".join(traceback.format_exception(kind, value, tb))
        self.world.steps.append((self.name, error, time.monotonic() - self.t0))
        status = "ok  " if error is None else "FAIL"
        print("    step %s %s (%.1fs)" % (status, self.name, time.monotonic() - self.t0), flush=True)
        return True


class World:
    """A private directory, bus and set of processes for one test case."""

    def __init__(self, name, log_level="info"):
        self.dir = tempfile.mkdtemp(prefix="choreo-it-%s-" % re.sub(r"\W", "_", name)[:40])
        self.bus = os.path.join(self.dir, "bus")
        os.mkdir(self.bus)
        self.procs = []
        self.hosts = []
        self.steps = []  # (name, error or None, seconds)
        self.log_level = log_level

    def scripts(self, name, files):
        """Writes a scripts directory DIR/name with {filename: text}; returns its path."""
        path = os.path.join(self.dir, name)
        os.makedirs(path, exist_ok=True)
        for fname, text in files.items():
            with open(os.path.join(path, fname), "w") as f:
                f.write(text)
        return path

    def host(self, name, scripts, bus=None, data=None, extra=(), start=True, wait=True):
        h = Host(self, name, scripts, bus or self.bus,
                 data or os.path.join(self.dir, "%s.db" % name), extra)
        self.hosts.append(h)
        if start:
            h.start(wait)
        return h

    def cli(self, *args, timeout=30):
        return run_cli(list(args), timeout=timeout)

    def step(self, name):
        """`with world.step("name"):` runs a part of a long case that is reported (and counted)
        on its own; a failure is recorded and the case goes on with its next step."""
        return _Step(self, name)

    def tail_one(self, pattern, poke, seconds=20):
        """Starts `choreo tail --count 1 PATTERN` and calls poke(n) every 0.2 s (n = 1, 2, ...)
        until tail has shown one message or `seconds` (times SLOW) have passed. Returns tail's
        exit status (None: still running) and the lines it printed."""
        out = open(os.path.join(self.dir, "tail.jsonl"), "w+")
        tail = self.spawn([CHOREO, "tail", "--bus", self.bus, "--count", "1", pattern],
                          stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + seconds * SLOW
        n = 0
        while tail.poll() is None and time.monotonic() < deadline:
            n += 1
            poke(n)
            time.sleep(0.2)
        rc = tail.poll()
        out.seek(0)
        lines = out.read().splitlines()
        out.close()
        return rc, lines

    def spawn(self, argv, **kw):
        """Starts any helper process (tail, poke) that must die with the case."""
        p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw)
        _all_procs.append(p)
        self.procs.append(p)
        return p

    def close(self):
        """Stops every process; returns the sanitizer reports found in the hosts' logs."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5  # a wedged host ignores SIGTERM: do not wait long
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        problems = []
        for h in self.hosts:
            if os.path.exists(h.log_path):
                text = h.log()
                m = SANITIZER_PATTERNS.search(text)
                if m:
                    problems.append("sanitizer report in the log of %s:\n%s"
                                    % (h.name, text[max(0, m.start() - 200):m.start() + 3000]))
        return problems

    def remove(self, failed):
        if (failed or os.environ.get("CHOREO_IT_KEEP") == "all") and os.environ.get("CHOREO_IT_KEEP"):
            print("    kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Running a file's cases

class Suite:
    def __init__(self, title):
        self.title = title
        self.cases = []
        self.world = None

    def test(self, fn=None, *, xfail=None):
        """Registers a case: fn(world). xfail="reason" marks a known failure: it is reported as
        XFAIL and does not fail the file (and XPASS when it unexpectedly passes)."""
        def register(f):
            self.cases.append((f.__name__, f, xfail))
            return f
        return register(fn) if fn else register

    def main(self, deadline=280):
        global CHOREO, POKE, SLOW, SANITIZED
        if len(sys.argv) < 2:
            print("usage: %s /path/to/choreo [CASE...]" % sys.argv[0], file=sys.stderr)
            sys.exit(2)
        CHOREO = os.path.abspath(sys.argv[1])
        wanted = sys.argv[2:]
        with open(CHOREO, "rb") as f:
            SANITIZED = b"__asan_init" in f.read()
        SLOW = float(os.environ.get("CHOREO_IT_SLOW", "3" if SANITIZED else "1"))
        POKE = os.environ.get("CHOREO_POKE")
        if not POKE:  # a build tree keeps it in tests/ next to the binary
            guess = os.path.join(os.path.dirname(CHOREO), "tests", "choreo_poke")
            POKE = guess if os.path.exists(guess) else None
        # Stop before ctest's TIMEOUT does, so that cleanup runs and the summary is printed:
        # the case running then fails, and the remaining ones are not started.
        state = {"in_case": False, "expired": False}

        def on_alarm(signum, frame):
            state["expired"] = True
            if state["in_case"]:
                raise TestFailure("the test file ran past its %d s deadline" % deadline)
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(deadline)
        signal.signal(signal.SIGTERM, lambda s, f: sys.exit(1))

        print("%s: %s%s" % (self.title, CHOREO, " (sanitizer build, timeouts x%g)" % SLOW
                            if SANITIZED else ""), flush=True)
        passed = failed = 0
        t_all = time.monotonic()
        for name, fn, xfail in self.cases:
            if wanted and name not in wanted:
                continue
            if state["expired"]:
                print("FAIL  %s (not run: out of time)" % name)
                failed += 1
                continue
            world = World(name)
            t0 = time.monotonic()
            error = None
            state["in_case"] = True
            try:
                fn(world)
            except Exception:
                error = traceback.format_exc()
            finally:
                state["in_case"] = False
            problems = world.close()
            if problems:
                error = (error + "\n" if error else "") + "\n".join(problems)
            secs = time.monotonic() - t0
            step_failed = any(e for _, e, _ in world.steps)
            if (error is not None or step_failed) and not xfail:
                logs = ""
                for h in world.hosts:
                    if os.path.exists(h.log_path):
                        logs += "\n--- last lines of %s's log:\n%s" % (h.name, _indent(h.log_tail(25)))
                if error is not None:
                    error += logs
                else:
                    print("    (the logs of the case's hosts follow)\n%s" % _indent(logs.strip()))
            # A case made of steps counts its steps; any other case counts once.
            for step, step_error, step_secs in world.steps:
                if step_error is None:
                    print("PASS  %s / %s (%.1fs)" % (name, step, step_secs))
                    passed += 1
                else:
                    print("FAIL  %s / %s (%.1fs)\n%s" % (name, step, step_secs, _indent(step_error)))
                    failed += 1
            if xfail:
                if error is None and not step_failed:
                    print("XPASS %s (%.1fs) -- expected to fail: %s" % (name, secs, xfail))
                    failed += 1
                else:
                    print("XFAIL %s (%.1fs) -- %s\n%s" % (name, secs, xfail, _indent(error or "")))
                    passed += 1
            elif error is not None:
                print("FAIL  %s (%.1fs)\n%s" % (name, secs, _indent(error)))
                failed += 1
            elif not world.steps:
                print("PASS  %s (%.1fs)" % (name, secs))
                passed += 1
            world.remove(error is not None or step_failed)
            sys.stdout.flush()
        signal.alarm(0)
        print("(%.1fs)" % (time.monotonic() - t_all))
        print("%d passed, %d failed" % (passed, failed), flush=True)
        sys.exit(1 if failed else 0)


def _indent(text, n=4):
    return "\n".join(" " * n + line for line in text.rstrip().splitlines())


# ---------------------------------------------------------------------------------------------
# Scripts shared by several files

# A producer: `send producer Burst {"from": F, "n": N}` publishes Tick {i = F .. F+N-1} in one
# handler call, that is in one transaction.
PRODUCER_LUA = r'''
local choreo = require "choreo"
choreo.on("Burst", function(msg, ctx)
  local from = msg.data.from or 1
  for i = from, from + msg.data.n - 1 do ctx:publish("Tick", { i = i }) end
end)
'''


def consumer_lua(work=0, version=None):
    """A consumer recording every Tick it applies in insertion order, in a plain table (no
    unique key) so that duplicates show. `work` adds a busy loop per message (to slow it down);
    `version` is recorded in every row (reload tests)."""
    return r'''
local choreo = require "choreo"
local VERSION = %s
choreo.db:exec([[create table if not exists ticks(n integer primary key, i integer not null,
  source text not null, seq integer not null, version integer)]])
choreo.on("Tick", function(msg, ctx)
  for _ = 1, %d do end
  ctx.db:exec("insert into ticks(i, source, seq, version) values (?, ?, ?, ?)",
    msg.data.i, msg.source, msg.seq, VERSION)
end)
''' % ("nil" if version is None else int(version), int(work))


def check_ticks(consumer, expected, source="producer"):
    """The consumer applied Tick i = 1..expected from source exactly once, in order, with
    increasing seq."""
    rows = consumer.query("select i, seq from ticks where source = ? order by n", source)
    total = len(rows)
    distinct = len(set(i for i, _ in rows))
    if total != expected or distinct != expected:
        raise TestFailure("ticks from %s: %d rows, %d distinct, expected %d of each"
                          % (source, total, distinct, expected))
    for k, (i, seq) in enumerate(rows):
        if i != k + 1:
            raise TestFailure("ticks from %s out of order at row %d: i = %d, expected %d"
                              % (source, k + 1, i, k + 1))
        if k and seq <= rows[k - 1][1]:
            raise TestFailure("seq not increasing at row %d: %d after %d" % (k + 1, seq, rows[k - 1][1]))
