/* JSON at the edges: data given on the command line becomes msgpack, and messages leave as
 * CloudEvents JSON (`choreo tail`, dead letters). cJSON does the parsing and printing. */
#ifndef CHOREO_JSON_H
#define CHOREO_JSON_H

#include <cjson/cJSON.h>
#include <msgpack.h>

#include "codec.h"

/* Parses one JSON text and appends its msgpack encoding to `out`. Integers without a fraction
 * or exponent that fit int64 stay integers. Returns 0, or CHOREO_EINVAL with a one-line reason
 * in err (e.g. "invalid JSON near 'x'", "nesting deeper than 30"). */
int choreo_json_to_msgpack(const char *json, msgpack_sbuffer *out, char *err, size_t errlen);

/* Values inside a document cJSON parsed, packed as choreo_json_to_msgpack packs a text (a
 * request's data, parsed once with the request): each integer is read again from its literal
 * in the document's text, so the values must be packed in the order they come in the text.
 * skip is the number of number literals before the first one (choreo_json_count_numbers of
 * everything before it). After a failure the reader is spent. */
typedef struct choreo_json_reader {
  const char *scan, *end;
} choreo_json_reader;
size_t choreo_json_count_numbers(const cJSON *item);
void choreo_json_reader_init(choreo_json_reader *r, const char *text, size_t len, size_t skip);
int choreo_json_pack_value(choreo_json_reader *r, const cJSON *value, msgpack_sbuffer *out,
                           char *err, size_t errlen);

/* Converts a msgpack value to a cJSON tree. UTF-8 text stays a string (NUL bytes escaped);
 * binary (bin, ext, or a string that is not UTF-8) becomes {"$base64": "..."}; non-string map
 * keys are printed. Returns NULL on allocation failure. The caller frees with cJSON_Delete. */
cJSON *choreo_msgpack_to_cjson(const msgpack_object *o);

/* The CloudEvents 1.0 JSON form of a message (a payload that is binary as a whole goes in
 * data_base64), as a tree (the caller frees it with
 * cJSON_Delete) or as a malloc'd single line (free()); NULL on allocation failure. */
cJSON *choreo_msg_to_cjson(const choreo_msg *m);
char *choreo_msg_to_json(const choreo_msg *m);

#endif
