"""The walls between choreo's layers (docs/ARCHITECTURE.md), checked over the source tree:

- runtime/include/choreo.h includes standard headers only;
- nothing under runtime/ includes a Lua header or a header of bindings/ that does;
- runtime/core/ includes no NNG or libuv header and no header of another layer;
- bindings/ includes no NNG or libuv header and no header of runtime/host/ or runtime/cli/;
  runtime/host/ none of runtime/cli/;
- each choreo_* table is named in SQL by its owning file only.

Run as `python3 layers.py SOURCE_DIR`; prints every breach and exits 1 if there is one."""
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
LUA_HEADERS = {"lua.h", "lauxlib.h", "lualib.h", "luaconf.h", "bindings.h"}
TABLE_OWNERS = {
    "choreo_log": "runtime/core/store.c",
    "choreo_checkpoints": "runtime/core/store.c",
    "choreo_retries": "runtime/core/store.c",
    "choreo_dead_letters": "runtime/core/store.c",
    "choreo_dropped": "runtime/core/store.c",
    "choreo_requests": "runtime/core/store.c",
    "choreo_subscribers": "runtime/core/store.c",
    "choreo_timeouts": "runtime/core/timeouts.c",
    "choreo_sagas": "runtime/core/sagas.c",
    "choreo_streams": "runtime/core/streams.c",
    "choreo_snapshots": "runtime/core/streams.c",
    "choreo_saga_misses": "runtime/core/sagas.c",
    "choreo_projections": "runtime/core/projections.c",
    "choreo_build": "runtime/core/projections.c",
    "choreo_projection_inputs": "runtime/core/projections.c",
    "choreo_projection_types": "runtime/core/projections.c",
    "choreo_build_sources": "runtime/core/buildhistory.c",
    "choreo_build_history": "runtime/core/buildhistory.c",
    "choreo_build_replay": "runtime/core/buildhistory.c",
    "choreo_source_types": "runtime/core/sourcetypes.c",
    "choreo_workflows": "runtime/core/workflows.c",
    "choreo_workflow_history": "runtime/core/workflows.c",
    "choreo_workflow_inbox": "runtime/core/workflows.c",
    "choreo_workflow_signals": "runtime/core/workflows.c",
    "choreo_journal": "runtime/core/journal.c",
    "choreo_journal_conversations": "runtime/core/journal.c",
}
SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE(?:\s+IF\s+NOT\s+EXISTS)?|INDEX\s+"
                       r"(?:IF\s+NOT\s+EXISTS\s+)?\w+\s+ON)\s+(choreo_\w+)", re.I)


def files(folder, exts):
    base = os.path.join(ROOT, folder)
    for dirpath, _, names in os.walk(base):
        for name in sorted(names):
            if name.endswith(exts):
                path = os.path.join(dirpath, name)
                yield os.path.relpath(path, ROOT), open(path, encoding="utf-8").read()


def headers_of(folder):
    return {os.path.basename(p) for p, _ in files(folder, (".h",))}


def main():
    breaches = []
    layers = {name: headers_of(name) for name in
              ("runtime/core", "runtime/host", "runtime/cli", "bindings")}
    forbidden = {
        "runtime/include": lambda kind, h: kind == '"' or h.startswith(("nng/", "uv", "lua")),
        "runtime/core": lambda kind, h: h.startswith("nng/") or h == "uv.h" or h in LUA_HEADERS
        or h in layers["runtime/host"] | layers["runtime/cli"] | layers["bindings"],
        "runtime/host": lambda kind, h: h in LUA_HEADERS or h in layers["runtime/cli"],
        "runtime/cli": lambda kind, h: h in LUA_HEADERS,
        "bindings": lambda kind, h: h.startswith("nng/") or h == "uv.h"
        or h in layers["runtime/host"] | layers["runtime/cli"],
    }
    for folder, bad in forbidden.items():
        for path, text in files(folder, (".c", ".h")):
            for kind, header in INCLUDE.findall(text):
                if bad(kind, header):
                    close = ">" if kind == "<" else '"'
                    breaches.append("%s includes %s%s%s" % (path, kind, header, close))
    for folder in ("runtime", "bindings", "scripts"):
        for path, text in files(folder, (".c", ".h", ".lua")):
            for table in SQL_TABLE.findall(text):
                owner = TABLE_OWNERS.get(table.lower())
                if owner is None:
                    breaches.append("%s names %s, a table with no owner listed here" % (path, table))
                elif owner != path:
                    breaches.append("%s runs SQL on %s, which %s owns" % (path, table, owner))
    for line in breaches:
        print(line)
    print("%d breach%s" % (len(breaches), "" if len(breaches) == 1 else "es"))
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
