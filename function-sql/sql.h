/* The SQL dialect of the function-sql runtime (SPEC §12): one statement
 *
 *   SELECT <item> [, <item>]... [WHERE <condition>]
 *
 * compiled once at startup, then run on each message: its JSON payload object plus the
 * message context (QoS, topic, timestamp, invoke id). Rules decided here (the original was
 * closed-source); the tests in test/unit/function-sql/test_sql.c pin every one of them:
 *
 * Syntax
 * - Keywords (SELECT WHERE AS AND OR NOT LIKE ESCAPE IN IS NULL TRUE FALSE) and function
 *   names are case-insensitive; field names are case-sensitive. There is no FROM: the
 *   input is the message. A field named like a keyword is written "quoted" ("" inside a
 *   quoted name stands for one "); a quoted name is also how to reach keys with spaces.
 * - Literals: integers (64-bit; larger ones become floats), floats (1.5, 2e3), 'strings'
 *   ('' inside stands for one '), true, false, null.
 * - Paths: a, a.b, a[0], a.b[2].c — an index is a non-negative integer literal.
 * - Operators, loosest first: OR; AND; NOT; comparisons = != <> < <= > >=, [NOT] LIKE
 *   pattern [ESCAPE 'c'], [NOT] IN (list), IS [NOT] NULL (not chainable: a < b < c is an
 *   error); + -; * / %; unary - +. Parentheses group.
 * - Functions: qos() timestamp() invokeid() topic() topic(n) abs(x) round(x[, digits])
 *   floor(x) ceil(x) lower(s) upper(s) length(v) concat(v, ...) substring(s, start[, len]).
 * - Nesting (parentheses, operators, arguments) is limited to SQL_MAX_DEPTH levels.
 * - Errors read "syntax error at position N: …", N the 1-based character (not byte)
 *   position of the offending token; the statement must be valid UTF-8.
 *
 * Values and evaluation
 * - A payload that is not a JSON object (array, number, invalid JSON, empty) gives no
 *   result; so does a WHERE condition that is not true (false, null, not a boolean).
 *   WHERE sees payload fields, not the aliases of the select list.
 * - A missing field, or a path through a non-object / out-of-range index, is null.
 * - Arithmetic needs two numbers, otherwise the result is null ('a' + 1, null + 1).
 *   Integers stay integers (1 + 1 = 2) and overflow into floats; / gives an integer when
 *   the division is exact (6 / 2 = 3) and a float otherwise (7 / 2 = 3.5); % of integers
 *   has the sign of the dividend; division or % by zero is null.
 * - Comparisons with null are false (even !=: use IS NULL). = and != compare any two
 *   values (numbers numerically, objects and arrays deeply; different types are unequal);
 *   < <= > >= compare two numbers or two strings (bytewise) and are null otherwise.
 * - AND, OR, NOT take booleans; null counts as false (so NOT (a = 1) is true when a is
 *   missing); any other type makes the result null.
 * - x IN (list) is x = one of the list; x NOT IN (list) is false when x is null.
 * - LIKE is case-sensitive on characters: % any run, _ exactly one; ESCAPE 'c' makes c
 *   quote the next pattern character (at the very end c stands for itself). A non-string
 *   operand gives null, null gives false.
 * - Functions give null for null or wrongly typed arguments. round/floor/ceil return
 *   integers (floats beyond the 64-bit range); round(x, d) keeps x's type and rounds to d
 *   decimals (d < 0: to tens, hundreds…), halves away from zero. lower/upper change ASCII
 *   letters only. length counts characters of a string or members of an array/object.
 *   concat joins strings, numbers and booleans as text (null when an argument is null or
 *   an object/array). substring counts characters from 1 like SQL (start may be < 1: the
 *   window start..start+len-1 is cut to the string). topic(n) is the n-th level of the
 *   topic (1-based), null when out of range. timestamp() is the message timestamp
 *   (Unix seconds).
 * - Bounded work per message: a string result past 16 MiB (concat) or a LIKE needing more
 *   than 2^26 steps (a long pattern on a long value) fails the call (sql_run returns -1).
 *
 * Output
 * - A JSON object: for each item in order, `*` adds every field of the payload in its
 *   order, an expression adds one field named by its alias (AS name, AS "any name" or
 *   AS 'any name'), else — for a path — by its last field name (a.b → "b", a[0] → "a",
 *   a.b[1] → "b"), else by the expression text as written ("temperature * 2", "qos()").
 * - A name given twice keeps the position where it first appears; its value is the one of
 *   the last expression with that name, or the payload's when only `*` gives it. So
 *   `SELECT qos() AS qos, *` reports the message QoS even when the payload has "qos", and
 *   `SELECT *, upper(name) AS name` keeps "name" in the payload's position.
 * - Missing values are written as null. Each field's floats are written with the fewest
 *   digits (15, 16 or 17) at which they all read back exactly (0.1 + 0.2 gives
 *   0.30000000000000004, 20.1 stays 20.1), the result compact, keys in order.
 */
#ifndef BAETYL_FUNCTION_SQL_H
#define BAETYL_FUNCTION_SQL_H

#include <jansson.h>
#include <stddef.h>

/* Deepest nesting of expressions a statement may have (parser and evaluator recursion). */
#define SQL_MAX_DEPTH 100

typedef struct sql_stmt sql_stmt;

/* What a statement may read besides the payload. NULL strings read as null. */
typedef struct {
    int qos;
    const char *topic;
    long long timestamp; /* Unix seconds */
    const char *invokeid;
} sql_msg;

/* Compiles text; NULL with err "syntax error at position N: …" (or "out of memory"). */
sql_stmt *sql_compile(const char *text, char *err, size_t errlen);
/* Frees a compiled statement (NULL is fine). */
void sql_free(sql_stmt *st);
/* The statement text given to sql_compile. */
const char *sql_text(const sql_stmt *st);

/* Runs st on a parsed payload: 1 with *out a new object, 0 when there is no result (payload
 * not an object, WHERE not true), -1 with err (out of memory, a limit above). */
int sql_eval(const sql_stmt *st, const json_t *payload, const sql_msg *msg, json_t **out, char *err,
             size_t errlen);
/* Runs st on raw payload bytes: 1 with *out the malloc'd compact JSON text (NUL-terminated,
 * *outlen bytes), 0 when there is no result (*out NULL; err says why when the payload was
 * not a JSON object, else ""), -1 with err on failure. */
int sql_run(const sql_stmt *st, const void *payload, size_t len, const sql_msg *msg, char **out,
            size_t *outlen, char *err, size_t errlen);
/* The compact JSON text of v as sql_run writes it (object order kept, shortest exact
 * floats); malloc'd, NULL when out of memory. */
char *sql_dump(const json_t *v);

#endif
