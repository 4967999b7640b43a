/* libFuzzer target for the SQL runtime's engine: the input is split at its first '\n' into
 * a statement and a payload. The statement must compile or fail with a positioned syntax
 * error; a compiled one runs on the fuzzed payload and on a fixed payload that has the
 * fields the seeds name, and every result must be a JSON object text.
 *
 * The Makefile links the function-sql objects (all but main.o) into this target. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../../function-sql/sql.h"

static const char fixed[] =
    "{\"id\":3,\"a\":{\"b\":[1,2.5,{\"c\":null}]},\"s\":\"h\xc3\xa9llo 10%\",\"t\":true,"
    "\"n\":-9223372036854775808,\"f\":0.1,\"temperature\":51,\"ts\":1,\"unit\":\"C\","
    "\"e\":\"\",\"o\":{},\"l\":[]}";

static void check_run(const sql_stmt *st, const char *payload, size_t len)
{
    static const sql_msg m = {.qos = 1,
                              .topic = "t/a/b",
                              .timestamp = 1700000000,
                              .invokeid = "7c9e6679-7425-40de-944b-e07fc1f90ae7"};
    char err[256], *out = NULL;
    size_t outlen = 0;
    int rc = sql_run(st, payload, len, &m, &out, &outlen, err, sizeof err);
    if (rc == 1) {
        if (!out || strlen(out) != outlen)
            abort();
        json_error_t je;
        json_t *v = json_loadb(out, outlen, JSON_ALLOW_NUL, &je);
        if (!json_is_object(v))
            abort(); /* every result is a JSON object */
        json_decref(v);
    } else if (out || outlen) {
        abort(); /* no result, no text */
    } else if (rc < 0 && !err[0]) {
        abort(); /* a failure says why */
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t cut = nl ? (size_t)(nl - data) : size;
    char *text = malloc(cut + 1);
    if (!text)
        return 0;
    memcpy(text, data, cut);
    text[cut] = '\0';

    char err[256];
    sql_stmt *st = sql_compile(text, err, sizeof err);
    if (!st) {
        /* "syntax error at position N: …" with 1 <= N <= characters + 1 */
        size_t pos = 0;
        if (strcmp(err, "out of memory") != 0 &&
            (sscanf(err, "syntax error at position %zu:", &pos) != 1 || pos < 1 ||
             pos > strlen(text) + 1))
            abort();
    } else {
        if (strcmp(sql_text(st), text) != 0)
            abort();
        const char *payload = nl ? (const char *)nl + 1 : "";
        check_run(st, payload, nl ? size - cut - 1 : 0);
        check_run(st, fixed, sizeof fixed - 1);
        sql_free(st);
    }
    free(text);
    return 0;
}
