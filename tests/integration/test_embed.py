"""The embedding example (examples/embed): `cmake --install` yields the header, the static and
shared libraries, choreo.pc and the binary; examples/embed/main.c compiles against that tree with
pkg-config and runs a host with a C handler and a Lua handler to the end.

The install and the example's binary are made once, in a directory of their own shared by the
cases (a World's directory goes when its case ends), and removed at exit. cmake, cc and
pkg-config are required: a machine without them fails here rather than skipping."""
import atexit
import glob
import os
import shlex
import shutil
import signal
import subprocess
import tempfile

import harness
from harness import Suite, check, check_eq, query, scalar, wait_until

suite = Suite("embed")

EMBED = os.path.join(harness.EXAMPLES, "embed")
COUNT = 5  # orders the example places; not its default (3), to see --count obeyed

_built = {}  # what example() made (or why it could not), for every case


class Run:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    def __repr__(self):
        return "%s -> rc %s\n  stdout: %s\n  stderr: %s" % (
            " ".join(map(shlex.quote, self.argv)), self.rc, self.out[-1500:], self.err[-1500:])


def _tool(name):
    path = shutil.which(name)
    check(path, "%s is not installed (the integration tests need it)" % name)
    return path


def _build_dir():
    """The build tree of the binary under test: the nearest directory above it holding a
    CMakeCache.txt (the binary may sit in a subdirectory of it)."""
    d = os.path.dirname(harness.CHOREO)
    while not os.path.exists(os.path.join(d, "CMakeCache.txt")):
        parent = os.path.dirname(d)
        check(parent != d, "no CMakeCache.txt above %s: not in a build tree" % harness.CHOREO)
        d = parent
    return d


def _must(argv, what, env=None, timeout=120):
    print("    $ %s" % " ".join(map(shlex.quote, argv)), flush=True)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       errors="replace", env=env, timeout=timeout * harness.SLOW)
    r = Run(argv, p.returncode, p.stdout, p.stderr)
    check(r.rc == 0, "%s failed: %r" % (what, r))
    return r


def _prepended(var, path):
    """The environment with `path` first in the search path `var`."""
    rest = [p for p in os.environ.get(var, "").split(os.pathsep) if p]
    return dict(os.environ, **{var: os.pathsep.join([path] + rest)})


def _make():
    cmake, cc, pkg_config = _tool("cmake"), _tool("cc"), _tool("pkg-config")
    top = tempfile.mkdtemp(prefix="choreo-it-embed-")
    atexit.register(shutil.rmtree, top, True)
    prefix = os.path.join(top, "prefix")
    _must([cmake, "--install", _build_dir(), "--prefix", prefix], "cmake --install")
    # libdir is lib/ or lib/<multiarch>/, depending on GNUInstallDirs and the system.
    pcs = glob.glob(os.path.join(prefix, "**", "pkgconfig", "choreo.pc"), recursive=True)
    check(len(pcs) == 1, "expected one choreo.pc under %s, found %r" % (prefix, pcs))
    libdir = os.path.dirname(os.path.dirname(pcs[0]))
    env = _prepended("PKG_CONFIG_PATH", os.path.dirname(pcs[0]))
    flags = shlex.split(_must([pkg_config, "--cflags", "--libs", "choreo"], "pkg-config",
                              env=env).out)
    # A sanitizer build installs a sanitized library: the program must carry the runtime too.
    shared = sorted(glob.glob(os.path.join(libdir, "libchoreo.so*")))
    sanitize = []
    if shared:
        with open(shared[0], "rb") as f:
            if b"__asan_init" in f.read():
                sanitize = ["-fsanitize=address,undefined"]
    exe = os.path.join(top, "embed")
    _must([cc, "-std=c11", "-Wall", "-Wextra", "-Werror"] + sanitize +
          [os.path.join(EMBED, "main.c"), "-o", exe] + flags, "compiling examples/embed/main.c")
    return {"prefix": prefix, "libdir": libdir, "exe": exe,
            "env": _prepended("LD_LIBRARY_PATH", libdir)}


def example():
    """Installs the build tree into a private prefix and compiles the example against it: the
    first call does it, the others return the same result (or fail the same way)."""
    if not _built:
        try:
            _built.update(_make())
        except Exception as e:
            _built["error"] = "%s: %s" % (type(e).__name__, e)
            raise
    check("error" not in _built, "building the example failed in an earlier case: %s"
          % _built.get("error"))
    return _built


def start_example(w, args):
    ex = example()
    argv = [ex["exe"]] + list(args)
    proc = w.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   text=True, errors="replace", env=ex["env"])
    return argv, proc


def finish(argv, proc, timeout):
    """Waits for the example to exit (killing it after `timeout` s, times SLOW)."""
    try:
        out, err = proc.communicate(timeout=timeout * harness.SLOW)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise harness.TestFailure("no exit within %.0f s: %r"
                                  % (timeout * harness.SLOW, Run(argv, None, out, err)))
    return Run(argv, proc.returncode, out, err)


def run_example(w, args, timeout=60):
    return finish(*start_example(w, args), timeout)


def copy_scripts(w):
    return shutil.copytree(os.path.join(EMBED, "scripts"), os.path.join(w.dir, "scripts"),
                           ignore=shutil.ignore_patterns(".choreo"))


@suite.test
def installed_library_builds_and_runs_the_example(w):
    ex = example()
    prefix, libdir = ex["prefix"], ex["libdir"]
    check(os.path.isfile(os.path.join(prefix, "include", "choreo.h")),
          "include/choreo.h installed under %s" % prefix)
    check(os.path.isfile(os.path.join(libdir, "libchoreo.a")), "libchoreo.a installed in %s" % libdir)
    check(glob.glob(os.path.join(libdir, "libchoreo.so*")), "libchoreo.so installed in %s" % libdir)
    choreo = os.path.join(prefix, "bin", "choreo")
    check(os.path.isfile(choreo) and os.access(choreo, os.X_OK), "bin/choreo installed in %s" % prefix)

    data = os.path.join(w.dir, "embed.db")
    r = run_example(w, [copy_scripts(w), "--bus", w.bus, "--data", data, "--count", str(COUNT)])
    check_eq(r.rc, 0, "exit code of the example (%r)" % r)
    summary = "handled %d orders in C and %d in Lua; log head %d; generation 1" % (
        COUNT, COUNT, 3 * COUNT)  # OrderPlaced, OrderRecorded, OrderCounted for each
    check(summary in r.out.splitlines(), "the summary %r in the output: %r" % (summary, r))
    check_eq(query(data, "select data from recorded order by rowid"),
             [('{"order":%d}' % i,) for i in range(1, COUNT + 1)], "rows the C handler wrote")
    check_eq(scalar(data, "select count(*) from counted"), COUNT, "rows the Lua handler wrote")


@suite.test
def bad_usage_is_one_line_and_exit_2(w):
    scripts = copy_scripts(w)
    cases = [
        ([], 2, "the scripts directory is missing"),
        ([scripts, "--count", "0"], 2, "--count needs a number"),
        ([scripts, "--count", "many"], 2, "--count needs a number"),
        ([scripts, "--frobnicate", "1"], 2, "unknown option --frobnicate"),
        ([scripts, "--name"], 2, "a value is missing after --name"),
        ([scripts, scripts], 2, "one scripts directory only"),
        # not a usage error but a runtime failure: the host cannot open; the line names the cause
        ([os.path.join(w.dir, "nowhere"), "--bus", w.bus], 1, "nowhere"),
    ]
    for args, rc, text in cases:
        r = run_example(w, args, timeout=30)
        check_eq(r.rc, rc, "exit code (%r)" % r)
        lines = r.err.splitlines()
        check(len(lines) == 1 and lines[0].startswith("embed: ") and text in lines[0],
              "one line on stderr, 'embed: ...%s...': %r" % (text, r))
        check_eq(r.out, "", "stdout of %r" % r)


@suite.test
def sigterm_stops_it_and_the_cli_sees_it_meanwhile(w):
    # The Lua handler publishes something else than OrderCounted: the example waits for a signal.
    scripts = copy_scripts(w)
    path = os.path.join(scripts, "orders.lua")
    with open(path) as f:
        text = f.read()
    check('ctx:publish("OrderCounted"' in text, "orders.lua publishes OrderCounted")
    with open(path, "w") as f:
        f.write(text.replace('ctx:publish("OrderCounted"', 'ctx:publish("OrderIgnored"'))
    data = os.path.join(w.dir, "embed.db")
    argv, proc = start_example(w, [scripts, "--bus", w.bus, "--data", data])

    def answers():
        if proc.poll() is not None:
            raise harness.TestFailure("the example exited early: %r" % finish(argv, proc, 10))
        return harness.run_cli(["status", "--bus", w.bus, "--host", "embed"]).rc == 0
    wait_until(answers, 20, "the embedded host to answer `choreo status`")
    wait_until(lambda: scalar(data, "select count(*) from counted") == 3, 20,
               "the Lua handler to count the 3 orders")
    proc.send_signal(signal.SIGTERM)
    r = finish(argv, proc, 30)
    check_eq(r.rc, 1, "exit code after SIGTERM before the end (%r)" % r)
    check("handled 3 orders in C and 0 in Lua; log head 9; generation 1" in r.out.splitlines(),
          "the summary after SIGTERM: %r" % r)
    check(r.err.splitlines()[-1:] == ["embed: stopped before Lua counted all 3 orders"],
          "the last line on stderr says why: %r" % r)


if __name__ == "__main__":
    suite.main()
