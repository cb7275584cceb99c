/* choreo — an event-driven runtime hosting Lua handlers, connected by NNG, durable in SQLite.
 *
 * This is the public C interface: a program opens a host (the same one `choreo run` starts),
 * registers C handlers beside the Lua ones, publishes and sends from C, reloads, reads the
 * host's status and stops it. Build with `cc $(pkg-config --cflags --libs choreo)`.
 *
 * Conventions (those of libuv): functions return 0 or a negative CHOREO_E* code, which
 * choreo_strerror() turns into text; a value comes back through an out-parameter. A host and
 * everything it hands out belong to its loop's thread: call these functions from that thread
 * (before the loop runs, or from a callback on it), except choreo_host_stop(), which any
 * thread may call. Inside a handler use the choreo_ctx_* functions: choreo_host_publish, _send
 * and _reload refuse (CHOREO_EINVAL) while one runs. Open and close a host outside the loop's
 * callbacks: both may run the loop. The host installs no signal handlers.
 *
 * SQLite: choreo's connections each stay on one thread. A program that never shares a
 * connection between threads may call sqlite3_config(SQLITE_CONFIG_MULTITHREAD) and
 * sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) first thing, as `choreo run` does: it saves the
 * library's global mutexes (a sixth of the CPU of a busy host). */
#ifndef CHOREO_H
#define CHOREO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHOREO_VERSION "0.1.0"

#ifndef CHOREO_EXTERN
#define CHOREO_EXTERN __attribute__((visibility("default")))
#endif

/* Error codes, always negative. */
enum {
  CHOREO_OK = 0,
  CHOREO_EINVAL = -1,    /* bad argument or malformed input */
  CHOREO_ENOMEM = -2,    /* out of memory */
  CHOREO_EIO = -3,       /* storage failure (SQLite) */
  CHOREO_EBUS = -4,      /* transport failure (NNG) */
  CHOREO_ESCRIPT = -5,   /* a script failed to load or a handler failed */
  CHOREO_ENOENT = -6,    /* no such thing (directory, dead letter, host) */
  CHOREO_ETOOBIG = -7,   /* a value or frame exceeds a limit */
  CHOREO_ESTOPPED = -8,  /* the host is stopping: what was under way rolled back */
};

/* Returns a static description of an error code. */
CHOREO_EXTERN const char *choreo_strerror(int err);

/* Declared, not included: the header needs neither libuv's nor SQLite's. */
struct uv_loop_s;
struct sqlite3;

typedef struct choreo_host choreo_host;

/* How a host is opened; see `choreo run` in README.md. Strings are copied. */
typedef struct choreo_host_config {
  const char *dir;  /* directory of the Lua scripts (watched for hot reload); required */
  const char *name; /* service name, unique on the bus; NULL: the directory's base name */
  const char *data; /* SQLite database file; NULL: DIR/.choreo/NAME.db */
  const char *bus;  /* bus directory of the ipc:// endpoints; NULL: $XDG_RUNTIME_DIR/choreo,
                       else /tmp/choreo-$UID */
  const char *const *listen; /* extra PUB endpoints (tcp://HOST:PORT); FETCH on PORT + 1 */
  size_t nlisten;
  const char *const *peers; /* other hosts' PUB endpoints, same convention */
  size_t npeers;
  uint64_t instruction_limit; /* per handler call; 0: 100,000,000 */
  size_t memory_limit;        /* bytes for the scripts' Lua state; 0: 256 MiB */
  size_t max_message;         /* largest encoded message the host appends; 0: 1 MiB; at most
                                 8 MiB. A larger one fails its handler (CHOREO_ETOOBIG). */
  int page_size; /* SQLite page size of a database created now, a power of two from 512 to
                    65,536; 0: 16 KiB. An existing database keeps its own. */
  /* Retention of the log: rows older than retain_ms that every host fetching from it has
   * applied are deleted; rows older than retain_max_ms go whoever still wants them (that host
   * is told which range is gone). 0: 7 days and 30 days. */
  int64_t retain_ms, retain_max_ms;
  /* Durable workflows: how many suspended instances stay in memory between their messages
   * (the least recently used beyond it are replayed from history when their next message
   * comes; 0: 10,000), and how many steps one history may take before the instance fails
   * (0: 10,000). */
  int workflow_cache, workflow_history_max;
  /* Keep no journal of the messages handled (what `choreo trace` reads): a little faster, and
   * nothing to trace. */
  bool no_journal;
  /* Write each handled message's span (W3C trace context, continued from the message's
   * traceparent or begun for one without) as OpenTelemetry JSON to this file, or to
   * DIR/NAME.otlp.jsonl for a directory. NULL: none. */
  const char *otlp_json;
  /* The loop to run on, owned by the caller, who runs it. NULL: the host makes its own, which
   * choreo_host_run() runs. */
  struct uv_loop_s *loop;
  /* Serve the scripts' queries (choreo.query) over HTTP on this URL (http://HOST:PORT):
   * GET /query/NAME?arg=value or POST /query/NAME with a JSON body. NULL: no HTTP. */
  const char *http;
  /* Serve metrics in Prometheus' text format at GET /metrics on this URL (http://HOST:PORT,
   * or a bare port for 127.0.0.1). NULL: none. */
  const char *metrics;
} choreo_host_config;

/* Opens the database, loads the scripts and starts listening and dialing peers on the loop.
 * Nothing is handled before the loop runs. On failure *out is NULL and err (if not NULL) holds
 * one line; on success it holds "". A process whose SIGPIPE is left at its default has it
 * ignored from here on: the loop writes to sockets whose other side may hang up at any time. */
CHOREO_EXTERN int choreo_host_open(choreo_host **out, const choreo_host_config *cfg, char *err,
                                   size_t errlen);
/* Runs the host's own loop until the host stops. CHOREO_EINVAL for a host on a caller's loop. */
CHOREO_EXTERN int choreo_host_run(choreo_host *h);
/* Asks the host to stop. From a handler, the batch under way commits first. From another
 * thread, a handler under way is cut short, however long it would run (its batch rolls back, to
 * be applied again at the next start). Then the host closes its sockets, timers and watchers;
 * choreo_host_run() returns, and on a caller's loop choreo_host_stopped() turns true. Calling
 * it again does nothing. To stop on signals whatever the handlers do, wait for them on a
 * thread of your own (sigwait) and call this there, as `choreo run` does. */
CHOREO_EXTERN void choreo_host_stop(choreo_host *h);
CHOREO_EXTERN bool choreo_host_stopped(const choreo_host *h);
/* Frees the host. One still running is stopped first (its loop is run until its handles have
 * closed). On the host's own loop, the program's handles must be closed by then. NULL is
 * allowed. */
CHOREO_EXTERN void choreo_host_close(choreo_host *h);
/* The loop the host runs on (its own or the caller's). */
CHOREO_EXTERN struct uv_loop_s *choreo_host_loop(choreo_host *h);

/* A message as a C handler sees it. Strings are NUL-terminated and valid during the call;
 * optional ones are NULL when absent. */
typedef struct choreo_message {
  const char *id, *source, *type, *kind, *time;
  const char *to, *subject, *correlationid, *causationid;
  int64_t seq;
  const void *data; /* the msgpack encoding of the data; NULL when there is none */
  size_t data_len;
} choreo_message;

/* What a C handler works with while it runs: emit messages and use the database, in the
 * message's transaction. Valid during the call only. */
typedef struct choreo_ctx choreo_ctx;

/* A C handler returns 0, or anything else to fail: its effects roll back and the message is
 * retried exactly as when a Lua handler raises (3 attempts, then 1 s, 5 s, 30 s, then a dead
 * letter). choreo_ctx_fail() names the reason. */
typedef int (*choreo_handler_fn)(choreo_ctx *ctx, const choreo_message *msg, void *ud);

/* Registers fn for a message type, or for every type starting with a prefix given as
 * "Prefix*". C handlers run before the Lua ones, in the same transaction and savepoint. They
 * stay across reloads. */
CHOREO_EXTERN int choreo_host_on(choreo_host *h, const char *pattern, choreo_handler_fn fn,
                                 void *ud);

/* Appends an event (to every subscriber, this host included) or a command (to the host named
 * `to`) to the log, in a transaction of its own, and publishes it. json is the data as JSON
 * text, or NULL for none. *seq (if not NULL) receives its sequence number. */
CHOREO_EXTERN int choreo_host_publish(choreo_host *h, const char *type, const char *json,
                                      int64_t *seq);
CHOREO_EXTERN int choreo_host_send(choreo_host *h, const char *to, const char *type,
                                   const char *json, int64_t *seq);

/* Loads the scripts afresh and swaps them in between two batches; on failure the running
 * scripts stay and err holds "file:line: message". Edits to the directory reload by
 * themselves; this is for hosts whose files change in ways a watcher cannot see. */
CHOREO_EXTERN int choreo_host_reload(choreo_host *h, char *err, size_t errlen);

/* What `choreo status` shows. Strings are the host's, valid until the next call into it. */
typedef struct choreo_host_status {
  const char *name, *dir;
  unsigned generation;      /* of the scripts: 1 at start, +1 per successful reload */
  const char *reload_error; /* "" when the last reload succeeded */
  int64_t head;             /* the last seq in this host's log */
  int64_t own_applied;      /* the last seq of its own log its handlers have seen */
  int64_t dead_letters;
  int64_t retries_pending;  /* messages waiting for a delayed retry */
  int64_t timeouts_pending; /* durable timeouts not yet due */
  int64_t sagas_running;    /* saga instances */
  int64_t workflows_running; /* workflow instances waiting or under way */
  int64_t workflows_stuck;  /* instances whose code no longer matches their history */
  double uptime_s;          /* since the host opened */
  uint64_t handled;         /* messages handled since then */
  double handled_per_s;     /* over the last minute (or since the start, if shorter) */
  uint64_t bad_frames; /* malformed or forged frames refused */
  uint64_t unhandled;  /* messages for this host no handler took, since it started */
  int64_t oldest;      /* the oldest seq its log still holds (retention deletes older ones) */
  int64_t db_bytes;    /* the size of its database file */
  int64_t wal_bytes;   /* and of its write-ahead log (started over past ~60 MB) */
  size_t npeers;
  int subscribers;     /* connections to its publisher now (other hosts subscribed to it) */
} choreo_host_status;

typedef struct choreo_peer_status {
  const char *name; /* "" until a --peer endpoint has answered */
  const char *url;
  int64_t applied, head, lag;
  bool up;              /* a connection to its FETCH endpoint is open */
  int64_t heard_ms_ago; /* since its last answer or live frame; -1: never heard */
  int64_t gone;         /* its messages deleted by its retention before we got them */
  int64_t gone_first, gone_last; /* the last range of them (seqs); 0 and 0 when none */
  int64_t fetched; /* messages applied from its FETCH answers (catching up), not live frames */
  int64_t fetches; /* its FETCH answers (pages of its log), whatever they brought */
} choreo_peer_status;

CHOREO_EXTERN int choreo_host_status_get(choreo_host *h, choreo_host_status *out);
/* Peer i of choreo_host_status.npeers; CHOREO_ENOENT past the end. */
CHOREO_EXTERN int choreo_host_peer_get(choreo_host *h, size_t i, choreo_peer_status *out);

/* Inside a handler: emit a message that commits with the one being handled and inherits its
 * correlation (causation: its id). json as in choreo_host_publish(). A reply goes to the
 * message's source. */
CHOREO_EXTERN int choreo_ctx_publish(choreo_ctx *ctx, const char *type, const char *json);
CHOREO_EXTERN int choreo_ctx_send(choreo_ctx *ctx, const char *to, const char *type,
                                  const char *json);
CHOREO_EXTERN int choreo_ctx_reply(choreo_ctx *ctx, const char *type, const char *json);
/* The host's database, inside the message's transaction (as ctx.db for Lua): do not begin,
 * commit or roll back; savepoints of your own are fine. */
CHOREO_EXTERN struct sqlite3 *choreo_ctx_db(choreo_ctx *ctx);
/* Records why the handler fails (for the log and the dead letter) and returns CHOREO_ESCRIPT,
 * for `return choreo_ctx_fail(ctx, "no such order");`. */
CHOREO_EXTERN int choreo_ctx_fail(choreo_ctx *ctx, const char *reason);

/* The message's data as JSON text ("null" when there is none): malloc'd, free() it; NULL when
 * memory runs out. */
CHOREO_EXTERN char *choreo_message_json(const choreo_message *msg);

#endif
