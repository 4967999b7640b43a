/* SQL evaluator: runs a compiled statement on one message. Values are jansson values (a
 * new reference per result; json_null() for null), so field values go to the output
 * without copies. Recursion follows the tree, whose height the parser bounded. The rules
 * implemented here are listed in sql.h. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/buf.h"
#include "sql_ast.h"

/* A string result longer than this is an error, not an allocation: concat can repeat a
 * large payload field as often as the statement names it. */
#define SQL_MAX_STRING (16u << 20)
/* Steps one LIKE may take (about a tenth of a second). */
#define SQL_LIKE_STEPS (1ul << 26)

typedef struct {
    const json_t *payload;
    const sql_msg *msg;
    char *err;
    size_t errlen;
    bool failed;
} ev_ctx;

static json_t *ev(ev_ctx *c, const sql_node *n);

static void ev_fail(ev_ctx *c, const char *msg)
{
    if (!c->failed)
        snprintf(c->err, c->errlen, "%s", msg);
    c->failed = true;
}

/* v, or NULL with "out of memory" when the jansson constructor failed. */
static json_t *ev_chk(ev_ctx *c, json_t *v)
{
    if (!v)
        ev_fail(c, "out of memory");
    return v;
}

static json_t *ev_bool(bool b)
{
    return b ? json_true() : json_false();
}

/* A string value from UTF-8 text of a message (null when NULL or not UTF-8). */
static json_t *ev_text(ev_ctx *c, const char *s, size_t len)
{
    if (!s || sql_utf8_valid_prefix(s, len) != len)
        return json_null();
    return ev_chk(c, json_stringn_nocheck(s, len));
}

/* Integer when r fits 64 bits, else a float (floor, ceil and round results). */
static json_t *ev_integral(ev_ctx *c, double r)
{
    if (r >= -9223372036854775808.0 && r < 9223372036854775808.0)
        return ev_chk(c, json_integer((json_int_t)r));
    return ev_chk(c, json_real(r));
}

/* 1 true, 0 false or null, -1 not a boolean. */
static int ev_truth(const json_t *v)
{
    if (json_is_true(v))
        return 1;
    if (json_is_false(v) || json_is_null(v))
        return 0;
    return -1;
}

/* The fewest digits (15..17) at which d reads back exactly, at least min. */
static int ev_real_digits(double d, int min)
{
    char buf[40];
    for (int p = min; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, d);
        if (strtod(buf, NULL) == d)
            return p;
    }
    return 17;
}

/* d as JSON writes it: shortest exact digits, ".0" when it would read as an integer. */
static void ev_format_real(double d, char *buf, size_t n)
{
    snprintf(buf, n, "%.*g", ev_real_digits(d, 15), d);
    if (!strpbrk(buf, ".eEn"))
        strncat(buf, ".0", n - strlen(buf) - 1);
}

static json_t *ev_path(ev_ctx *c, const sql_node *n)
{
    const json_t *v = c->payload;
    for (size_t k = 0; k < n->nsegs && v; k++) {
        const sql_seg *s = &n->segs[k];
        if (s->name)
            v = json_is_object(v) ? json_object_getn(v, s->name, s->name_len) : NULL;
        else
            v = json_is_array(v) ? json_array_get(v, s->index) : NULL;
    }
    return v ? json_incref((json_t *)v) : json_null();
}

static json_t *ev_arith(ev_ctx *c, int op, const json_t *a, const json_t *b)
{
    if (!json_is_number(a) || !json_is_number(b))
        return json_null();
    if (json_is_integer(a) && json_is_integer(b)) {
        long long x = json_integer_value(a), y = json_integer_value(b), r;
        switch (op) {
        case TK_PLUS:
            if (!__builtin_add_overflow(x, y, &r))
                return ev_chk(c, json_integer(r));
            break;
        case TK_MINUS:
            if (!__builtin_sub_overflow(x, y, &r))
                return ev_chk(c, json_integer(r));
            break;
        case TK_STAR:
            if (!__builtin_mul_overflow(x, y, &r))
                return ev_chk(c, json_integer(r));
            break;
        case TK_SLASH:
            if (y == 0)
                return json_null();
            if (!(x == LLONG_MIN && y == -1) && x % y == 0)
                return ev_chk(c, json_integer(x / y));
            break; /* inexact (or overflowing): a float */
        case TK_PERCENT:
            if (y == 0)
                return json_null();
            return ev_chk(c, json_integer(y == -1 ? 0 : x % y));
        }
    }
    double x = json_number_value(a), y = json_number_value(b), r = 0;
    switch (op) {
    case TK_PLUS: r = x + y; break;
    case TK_MINUS: r = x - y; break;
    case TK_STAR: r = x * y; break;
    case TK_SLASH:
        if (y == 0)
            return json_null();
        r = x / y;
        break;
    case TK_PERCENT:
        if (y == 0)
            return json_null();
        r = fmod(x, y);
        break;
    }
    if (!isfinite(r)) /* JSON has no infinity */
        return json_null();
    return ev_chk(c, json_real(r));
}

/* Exact order of an integer and a real on every platform (long double is only double on ARM,
 * and a double cannot hold every 64-bit integer): compare integer parts, then the fraction.
 * NaN cannot occur (JSON has none). */
static int order_int_real(json_int_t i, double d)
{
    if (d < -9223372036854775808.0)
        return 1;
    if (d >= 9223372036854775808.0)
        return -1;
    double t = trunc(d);
    json_int_t ti = (json_int_t)t;
    if (i != ti)
        return i < ti ? -1 : 1;
    return d > t ? -1 : d < t ? 1 : 0;
}

/* -1, 0, 1 for two numbers or two strings; -2 when they cannot be ordered. */
static int ev_order(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            json_int_t x = json_integer_value(a), y = json_integer_value(b);
            return x < y ? -1 : x > y;
        }
        if (json_is_integer(a))
            return order_int_real(json_integer_value(a), json_real_value(b));
        if (json_is_integer(b))
            return -order_int_real(json_integer_value(b), json_real_value(a));
        double x = json_real_value(a), y = json_real_value(b);
        return x < y ? -1 : x > y;
    }
    if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int r = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        if (r)
            return r < 0 ? -1 : 1;
        return la < lb ? -1 : la > lb;
    }
    return -2;
}

static bool ev_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return ev_order(a, b) == 0;
    return json_equal((json_t *)a, (json_t *)b);
}

static json_t *ev_cmp(int op, const json_t *a, const json_t *b)
{
    if (json_is_null(a) || json_is_null(b))
        return json_false();
    if (op == TK_EQ)
        return ev_bool(ev_equal(a, b));
    if (op == TK_NE)
        return ev_bool(!ev_equal(a, b));
    int o = ev_order(a, b);
    if (o == -2)
        return json_null();
    switch (op) {
    case TK_LT: return ev_bool(o < 0);
    case TK_LE: return ev_bool(o <= 0);
    case TK_GT: return ev_bool(o > 0);
    default: return ev_bool(o >= 0);
    }
}

/* SQL LIKE on code points: % any run, _ one character, esc quotes the next pattern
 * character. Greedy with one backtrack point (the last %), so no recursion; but a value
 * and a pattern both long can cost length × length steps, hence a budget: 1 match, 0 no
 * match, -1 budget spent. */
static int ev_like(const char *s, size_t sl, const char *p, size_t pl, bool has_esc, uint32_t esc)
{
    size_t si = 0, pi = 0, star_p = SIZE_MAX, star_s = 0;
    unsigned long steps = 0;
    while (si < sl) {
        if (++steps > SQL_LIKE_STEPS)
            return -1;
        if (pi < pl) {
            size_t pj = pi, sj = si;
            uint32_t pc = sql_utf8_next(p, pl, &pj);
            bool literal = false;
            if (has_esc && pc == esc) { /* at the very end it stands for itself */
                literal = true;
                if (pj < pl)
                    pc = sql_utf8_next(p, pl, &pj);
            }
            if (!literal && pc == '%') {
                star_p = pi = pj;
                star_s = si;
                continue;
            }
            uint32_t sc = sql_utf8_next(s, sl, &sj);
            if ((!literal && pc == '_') || sc == pc) {
                si = sj;
                pi = pj;
                continue;
            }
        }
        if (star_p == SIZE_MAX)
            return 0;
        (void)sql_utf8_next(s, sl, &star_s); /* let the last % take one more character */
        si = star_s;
        pi = star_p;
    }
    while (pi < pl) { /* only %s may remain */
        size_t pj = pi;
        uint32_t pc = sql_utf8_next(p, pl, &pj);
        if (pc != '%' || (has_esc && esc == '%'))
            return 0;
        pi = pj;
    }
    return 1;
}

/* A growing text buffer of at most max bytes. */
typedef struct {
    bt_buf text; /* NUL-terminated */
    size_t max;
} ev_buf;

/* Appends s[0..n) to b; false with an error when too long or out of memory. */
static bool ev_append(ev_ctx *c, ev_buf *b, const char *s, size_t n)
{
    if (b->text.len > b->max || n > b->max - b->text.len) {
        ev_fail(c, "string result too long");
        return false;
    }
    if (bt_buf_append_nul(&b->text, s, n) < 0) {
        ev_fail(c, "out of memory");
        return false;
    }
    return true;
}

static json_t *ev_concat(ev_ctx *c, const sql_node *n)
{
    ev_buf b = {.max = SQL_MAX_STRING};
    json_t *res = NULL;
    for (size_t k = 0; k < n->nargs; k++) {
        json_t *v = ev(c, n->args[k]);
        if (!v)
            goto out;
        char num[48];
        bool ok = true;
        if (json_is_string(v)) {
            ok = ev_append(c, &b, json_string_value(v), json_string_length(v));
        } else if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            ok = ev_append(c, &b, num, strlen(num));
        } else if (json_is_real(v)) {
            ev_format_real(json_real_value(v), num, sizeof num);
            ok = ev_append(c, &b, num, strlen(num));
        } else if (json_is_boolean(v)) {
            ok = ev_append(c, &b, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5);
        } else { /* null, object, array */
            json_decref(v);
            res = json_null();
            goto out;
        }
        json_decref(v);
        if (!ok)
            goto out;
    }
    res = ev_chk(c, json_stringn_nocheck(b.text.p ? (char *)b.text.p : "", b.text.len));
out:
    bt_buf_free(&b.text);
    return res;
}

/* Byte offset of code point number cp (0-based) in s, or len when past the end. */
static size_t ev_cp_offset(const char *s, size_t len, long long cp)
{
    size_t i = 0;
    for (long long k = 0; k < cp && i < len; k++)
        (void)sql_utf8_next(s, len, &i);
    return i;
}

static json_t *ev_substring(ev_ctx *c, json_t **a, size_t nargs)
{
    if (!json_is_string(a[0]) || !json_is_integer(a[1]) || (nargs == 3 && !json_is_integer(a[2])))
        return json_null();
    const char *s = json_string_value(a[0]);
    size_t sl = json_string_length(a[0]);
    long long n = (long long)sql_utf8_count(s, sl);
    long long from = json_integer_value(a[1]), to = LLONG_MAX; /* [from, to) 1-based */
    if (nargs == 3) {
        long long len = json_integer_value(a[2]);
        if (len < 0)
            return json_null();
        if (__builtin_add_overflow(from, len, &to))
            to = LLONG_MAX;
    }
    if (from < 1)
        from = 1;
    if (to > n + 1)
        to = n + 1;
    if (to <= from)
        return ev_chk(c, json_string(""));
    size_t b0 = ev_cp_offset(s, sl, from - 1);
    size_t b1 = b0 + ev_cp_offset(s + b0, sl - b0, to - from);
    return ev_chk(c, json_stringn_nocheck(s + b0, b1 - b0));
}

static json_t *ev_round(ev_ctx *c, json_t **a, size_t nargs)
{
    const json_t *x = a[0];
    if (!json_is_number(x))
        return json_null();
    if (nargs == 1) {
        if (json_is_integer(x))
            return json_incref((json_t *)x);
        return ev_integral(c, round(json_real_value(x)));
    }
    if (!json_is_integer(a[1]))
        return json_null();
    long long d = json_integer_value(a[1]);
    if (json_is_integer(x)) {
        long long v = json_integer_value(x);
        if (d >= 0)
            return json_incref((json_t *)x);
        if (d < -18) /* 10^19 exceeds every 64-bit integer */
            return ev_chk(c, json_integer(0));
        long long p = 1, q, r;
        for (long long k = 0; k < -d; k++)
            p *= 10;
        q = v / p;
        long long rem = v % p;
        if ((rem < 0 ? -rem : rem) * 2 >= p) /* halves away from zero */
            q += v < 0 ? -1 : 1;
        if (__builtin_mul_overflow(q, p, &r))
            return ev_chk(c, json_real((double)q * (double)p));
        return ev_chk(c, json_integer(r));
    }
    double v = json_real_value(x), r;
    if (d > 400)
        return json_incref((json_t *)x);
    if (d < -400)
        return ev_chk(c, json_real(0.0));
    double p = pow(10.0, (double)(d < 0 ? -d : d));
    if (d >= 0) {
        double y = v * p;
        if (!isfinite(y)) /* more digits than a double has: nothing to round */
            return json_incref((json_t *)x);
        r = round(y) / p;
    } else {
        r = isfinite(p) ? round(v / p) * p : 0.0;
    }
    if (!isfinite(r))
        return json_null();
    return ev_chk(c, json_real(r));
}

static json_t *ev_topic(ev_ctx *c, json_t **a, size_t nargs)
{
    const char *t = c->msg->topic;
    if (!t)
        return json_null();
    size_t tl = strlen(t);
    if (nargs == 0)
        return ev_text(c, t, tl);
    if (!json_is_integer(a[0]) || json_integer_value(a[0]) < 1)
        return json_null();
    long long want = json_integer_value(a[0]);
    const char *s = t;
    for (long long k = 1; k < want; k++) {
        s = strchr(s, '/');
        if (!s)
            return json_null();
        s++;
    }
    const char *e = strchr(s, '/');
    return ev_text(c, s, e ? (size_t)(e - s) : strlen(s));
}

/* ASCII-only case change of a string (UTF-8 stays valid: only bytes < 0x80 change). */
static json_t *ev_case(ev_ctx *c, const json_t *v, bool upper)
{
    if (!json_is_string(v))
        return json_null();
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (!s)
        return ev_chk(c, NULL);
    memcpy(s, json_string_value(v), n + 1);
    for (size_t i = 0; i < n; i++) {
        if (upper && s[i] >= 'a' && s[i] <= 'z')
            s[i] = (char)(s[i] - 'a' + 'A');
        else if (!upper && s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] - 'A' + 'a');
    }
    json_t *r = ev_chk(c, json_stringn_nocheck(s, n));
    free(s);
    return r;
}

static json_t *ev_func(ev_ctx *c, const sql_node *n)
{
    const sql_msg *m = c->msg;
    switch (n->fn) {
    case FN_QOS: return ev_chk(c, json_integer(m->qos));
    case FN_TIMESTAMP: return ev_chk(c, json_integer(m->timestamp));
    case FN_INVOKEID: return ev_text(c, m->invokeid, m->invokeid ? strlen(m->invokeid) : 0);
    case FN_CONCAT: return ev_concat(c, n);
    default: break;
    }
    json_t *a[3] = {NULL, NULL, NULL}; /* the parser allows at most 3 here */
    json_t *r = NULL;
    size_t na = n->nargs < 3 ? n->nargs : 3;
    for (size_t k = 0; k < na; k++)
        if (!(a[k] = ev(c, n->args[k])))
            goto out;
    const json_t *x = a[0];
    switch (n->fn) {
    case FN_TOPIC: r = ev_topic(c, a, na); break;
    case FN_ABS:
        if (json_is_integer(x)) {
            json_int_t v = json_integer_value(x);
            r = v == LLONG_MIN ? ev_chk(c, json_real(-(double)v))
                               : ev_chk(c, json_integer(v < 0 ? -v : v));
        } else {
            r = json_is_real(x) ? ev_chk(c, json_real(fabs(json_real_value(x)))) : json_null();
        }
        break;
    case FN_ROUND: r = ev_round(c, a, na); break;
    case FN_FLOOR:
    case FN_CEIL:
        if (json_is_integer(x))
            r = json_incref(a[0]);
        else if (json_is_real(x))
            r = ev_integral(c, n->fn == FN_FLOOR ? floor(json_real_value(x))
                                                 : ceil(json_real_value(x)));
        else
            r = json_null();
        break;
    case FN_LOWER: r = ev_case(c, x, false); break;
    case FN_UPPER: r = ev_case(c, x, true); break;
    case FN_LENGTH:
        if (json_is_string(x))
            r = ev_chk(c, json_integer((json_int_t)sql_utf8_count(json_string_value(x),
                                                                  json_string_length(x))));
        else if (json_is_array(x))
            r = ev_chk(c, json_integer((json_int_t)json_array_size(x)));
        else if (json_is_object(x))
            r = ev_chk(c, json_integer((json_int_t)json_object_size(x)));
        else
            r = json_null();
        break;
    case FN_SUBSTRING: r = ev_substring(c, a, na); break;
    default: r = json_null(); break;
    }
out:
    for (size_t k = 0; k < na; k++)
        json_decref(a[k]);
    return r;
}

static json_t *ev_in(ev_ctx *c, const sql_node *n)
{
    json_t *x = ev(c, n->args[0]);
    if (!x)
        return NULL;
    if (json_is_null(x))
        return json_false();
    bool found = false;
    for (size_t k = 1; k < n->nargs && !found; k++) {
        json_t *e = ev(c, n->args[k]);
        if (!e) {
            json_decref(x);
            return NULL;
        }
        found = !json_is_null(e) && ev_equal(x, e);
        json_decref(e);
    }
    json_decref(x);
    return ev_bool(found != n->negate);
}

static json_t *ev_like_node(ev_ctx *c, const sql_node *n)
{
    json_t *s = ev(c, n->args[0]), *p = s ? ev(c, n->args[1]) : NULL, *r;
    if (!p) {
        r = NULL;
    } else if (json_is_null(s) || json_is_null(p)) {
        r = json_false();
    } else if (!json_is_string(s) || !json_is_string(p)) {
        r = json_null();
    } else {
        int m = ev_like(json_string_value(s), json_string_length(s), json_string_value(p),
                        json_string_length(p), n->has_escape, n->escape);
        if (m < 0)
            ev_fail(c, "LIKE takes too many steps (a long pattern on a long value)");
        r = m < 0 ? NULL : ev_bool((m == 1) != n->negate);
    }
    json_decref(s);
    json_decref(p);
    return r;
}

/* AND / OR with short-circuit; null counts as false, a non-boolean makes null. */
static json_t *ev_logic(ev_ctx *c, const sql_node *n)
{
    int stop = n->kind == NK_AND ? 0 : 1; /* the value that decides alone */
    json_t *a = ev(c, n->args[0]);
    if (!a)
        return NULL;
    int ta = ev_truth(a);
    json_decref(a);
    if (ta == stop)
        return ev_bool(stop);
    json_t *b = ev(c, n->args[1]);
    if (!b)
        return NULL;
    int tb = ev_truth(b);
    json_decref(b);
    if (tb == stop)
        return ev_bool(stop);
    if (ta < 0 || tb < 0)
        return json_null();
    return ev_bool(!stop);
}

static json_t *ev(ev_ctx *c, const sql_node *n)
{
    json_t *a, *b, *r;
    switch (n->kind) {
    case NK_LIT: return json_incref(n->lit);
    case NK_PATH: return ev_path(c, n);
    case NK_FUNC: return ev_func(c, n);
    case NK_AND:
    case NK_OR: return ev_logic(c, n);
    case NK_IN: return ev_in(c, n);
    case NK_LIKE: return ev_like_node(c, n);
    case NK_NEG:
    case NK_NOT:
    case NK_ISNULL:
        if (!(a = ev(c, n->args[0])))
            return NULL;
        if (n->kind == NK_ISNULL) {
            r = ev_bool(json_is_null(a) != n->negate);
        } else if (n->kind == NK_NOT) {
            int t = ev_truth(a);
            r = t < 0 ? json_null() : ev_bool(!t);
        } else if (!json_is_number(a)) {
            r = json_null();
        } else if (n->op == TK_PLUS) {
            r = json_incref(a);
        } else if (json_is_real(a)) {
            r = ev_chk(c, json_real(-json_real_value(a)));
        } else {
            json_int_t v = json_integer_value(a);
            r = v == LLONG_MIN ? ev_chk(c, json_real(-(double)v)) : ev_chk(c, json_integer(-v));
        }
        json_decref(a);
        return r;
    case NK_ARITH:
    case NK_CMP:
        if (!(a = ev(c, n->args[0])))
            return NULL;
        if (!(b = ev(c, n->args[1]))) {
            json_decref(a);
            return NULL;
        }
        r = n->kind == NK_ARITH ? ev_arith(c, n->op, a, b) : ev_cmp(n->op, a, b);
        json_decref(a);
        json_decref(b);
        return r;
    }
    return json_null();
}

/* An expression of the select list is named key (so `*` must not override it). */
static bool named_explicitly(const sql_stmt *st, const char *key, size_t klen)
{
    for (size_t k = 0; k < st->nitems; k++) {
        const sql_item *it = &st->items[k];
        if (!it->star && it->name_len == klen && memcmp(it->name, key, klen) == 0)
            return true;
    }
    return false;
}

int sql_eval(const sql_stmt *st, const json_t *payload, const sql_msg *msg, json_t **out, char *err,
             size_t errlen)
{
    static const sql_msg none = {0};
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!json_is_object(payload))
        return 0;
    ev_ctx c = {.payload = payload, .msg = msg ? msg : &none, .err = err, .errlen = errlen};
    if (st->where) {
        json_t *w = ev(&c, st->where);
        if (!w)
            return -1;
        int t = ev_truth(w);
        json_decref(w);
        if (t != 1)
            return 0;
    }
    json_t *o = ev_chk(&c, json_object());
    if (!o)
        return -1;
    for (size_t k = 0; k < st->nitems; k++) {
        const sql_item *it = &st->items[k];
        if (it->star) {
            const char *key;
            size_t klen;
            json_t *v;
            json_object_keylen_foreach((json_t *)payload, key, klen, v)
            {
                /* First position wins; the value of a named expression wins over `*`. */
                if (named_explicitly(st, key, klen) && json_object_getn(o, key, klen))
                    continue;
                if (json_object_setn_nocheck(o, key, klen, v) < 0) {
                    ev_fail(&c, "out of memory");
                    goto fail;
                }
            }
            continue;
        }
        json_t *v = ev(&c, it->expr);
        if (!v || json_object_setn_new_nocheck(o, it->name, it->name_len, v) < 0) {
            ev_fail(&c, "out of memory");
            goto fail;
        }
    }
    *out = o;
    return 1;
fail:
    json_decref(o);
    return -1;
}

/* Smallest precision (min..17) at which every float in v reads back exactly. */
static int dump_digits(const json_t *v, int min)
{
    if (json_is_real(v))
        return ev_real_digits(json_real_value(v), min);
    if (json_is_array(v)) {
        for (size_t k = 0; k < json_array_size(v) && min < 17; k++)
            min = dump_digits(json_array_get(v, k), min);
    } else if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach((json_t *)v, key, x)
        {
            if (min >= 17)
                break;
            min = dump_digits(x, min);
        }
    }
    return min;
}

/* One value as compact JSON with the fewest float digits that read back exactly. */
static char *dump_value(const json_t *v)
{
    size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY;
    return json_dumps(v, flags | JSON_REAL_PRECISION(dump_digits(v, 15)));
}

char *sql_dump(const json_t *v)
{
    if (!json_is_object(v))
        return v ? dump_value(v) : NULL;
    /* An object field by field, so that one float needing 17 digits (0.1 + 0.2) does
     * not print every other float of the result with 17 digits too (20.1 as
     * 20.100000000000001): jansson has one precision per dump. */
    ev_buf b = {.max = SIZE_MAX};
    ev_ctx c = {0};
    char scratch[8];
    c.err = scratch;
    c.errlen = sizeof scratch;
    const char *key;
    size_t klen;
    json_t *x;
    bool ok = ev_append(&c, &b, "{", 1);
    json_object_keylen_foreach((json_t *)v, key, klen, x)
    {
        json_t *k = json_stringn_nocheck(key, klen);
        char *ks = k ? dump_value(k) : NULL, *vs = ks ? dump_value(x) : NULL;
        json_decref(k);
        ok = ok && vs && (b.text.len == 1 || ev_append(&c, &b, ",", 1)) &&
             ev_append(&c, &b, ks, strlen(ks)) && ev_append(&c, &b, ":", 1) &&
             ev_append(&c, &b, vs, strlen(vs));
        free(ks);
        free(vs);
        if (!ok)
            break;
    }
    if (!ok || !ev_append(&c, &b, "}", 1)) {
        bt_buf_free(&b.text);
        return NULL;
    }
    return (char *)b.text.p;
}

int sql_run(const sql_stmt *st, const void *payload, size_t len, const sql_msg *msg, char **out,
            size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    if (err && errlen)
        err[0] = '\0';
    if (!payload || len == 0) {
        snprintf(err, errlen, "empty payload");
        return 0;
    }
    json_error_t je;
    json_t *in = json_loadb(payload, len, JSON_ALLOW_NUL, &je);
    if (!in) {
        snprintf(err, errlen, "payload is not JSON: %s", je.text);
        return 0;
    }
    if (!json_is_object(in)) {
        snprintf(err, errlen, "payload is not a JSON object");
        json_decref(in);
        return 0;
    }
    json_t *res;
    int rc = sql_eval(st, in, msg, &res, err, errlen);
    json_decref(in);
    if (rc <= 0)
        return rc;
    char *text = sql_dump(res);
    json_decref(res);
    if (!text) {
        snprintf(err, errlen, "cannot write the result as JSON (out of memory or too deep)");
        return -1;
    }
    *out = text;
    *outlen = strlen(text);
    return 1;
}
