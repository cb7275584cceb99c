/* choreo map, shared with choreo ui: the graph of what flowed over a window, from the journals
 * of every host on the bus (cli_map.c). */
#ifndef CHOREO_CLI_MAP_H
#define CHOREO_CLI_MAP_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct map map;

/* Asks the hosts of the bus (or only `host`; none when bus is "") and the peers (other
 * machines' hosts, by their --listen endpoint) what they handled in the last window_ms; *out for
 * map_destroy. On failure one line in err, and CLI_USAGE or CLI_FAIL. */
int map_build(const char *bus, const char *host, const char *const *peers, int npeers,
              int64_t window_ms, map **out, char *err, size_t errlen);
/* {window_ms, hosts, edges, roles}, as `choreo map --format json` prints it. */
cJSON *map_json(const map *m);
void map_destroy(map *m);

#endif
