/* SQL parser: tokens → syntax tree, by recursive descent with one function per precedence
 * level (loosest first: OR, AND, NOT, comparison, + -, * / %, unary, primary). Nesting is
 * bounded twice: the recursion of the parser itself and the height of the tree it builds
 * (a + a + … is flat to parse but deep to evaluate), so neither stage can overflow the
 * stack on a hostile statement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sql_ast.h"

typedef struct {
    const char *text;
    sql_tok *t;
    size_t n, i; /* tokens, current index */
    int depth;
    char *err;
    size_t errlen;
    bool failed;
} parser;

/* Words that cannot start a name or be an alias unquoted. FROM is reserved only to
 * explain that it is not supported. */
static const char *const reserved[] = {
    "select", "where", "as", "and",  "or",   "not",   "like",
    "escape", "in",    "is", "null", "true", "false", "from",
};

static const struct {
    const char *name;
    sql_fn fn;
    int min, max; /* argument count; max -1: unbounded */
} functions[] = {
    {"qos", FN_QOS, 0, 0},
    {"topic", FN_TOPIC, 0, 1},
    {"timestamp", FN_TIMESTAMP, 0, 0},
    {"invokeid", FN_INVOKEID, 0, 0},
    {"abs", FN_ABS, 1, 1},
    {"round", FN_ROUND, 1, 2},
    {"floor", FN_FLOOR, 1, 1},
    {"ceil", FN_CEIL, 1, 1},
    {"lower", FN_LOWER, 1, 1},
    {"upper", FN_UPPER, 1, 1},
    {"length", FN_LENGTH, 1, 1},
    {"concat", FN_CONCAT, 1, -1},
    {"substring", FN_SUBSTRING, 2, 3},
};

static const sql_tok *cur(parser *p)
{
    return &p->t[p->i];
}

static const sql_tok *peek(parser *p, size_t k)
{
    size_t j = p->i + k;
    return &p->t[j < p->n ? j : p->n - 1];
}

static void advance(parser *p)
{
    if (p->t[p->i].kind != TK_END)
        p->i++;
}

static bool tok_is(parser *p, const sql_tok *t, const char *word)
{
    return t->kind == TK_IDENT && t->len == strlen(word) &&
           strncasecmp(p->text + t->start, word, t->len) == 0;
}

static bool kw(parser *p, const char *word)
{
    return tok_is(p, cur(p), word);
}

static bool is_reserved(parser *p, const sql_tok *t)
{
    for (size_t k = 0; k < sizeof reserved / sizeof reserved[0]; k++)
        if (tok_is(p, t, reserved[k]))
            return true;
    return false;
}

/* Records the first error only: later ones are consequences. */
static void fail_at(parser *p, size_t off, const char *msg)
{
    if (p->failed)
        return;
    p->failed = true;
    sql_syntax_error(p->err, p->errlen, p->text, off, "%s", msg);
}

static void fail_oom(parser *p)
{
    if (p->failed)
        return;
    p->failed = true;
    snprintf(p->err, p->errlen, "out of memory");
}

/* "'tok'" (cut to 24 bytes on a character boundary) or "end of statement". */
static void describe(parser *p, const sql_tok *t, char *buf, size_t n)
{
    if (t->kind == TK_END) {
        snprintf(buf, n, "end of statement");
        return;
    }
    size_t len = t->len;
    const char *more = "";
    if (len > 24) {
        len = 24;
        while (len > 0 && ((unsigned char)p->text[t->start + len] & 0xC0) == 0x80)
            len--;
        more = "...";
    }
    snprintf(buf, n, "'%.*s%s'", (int)len, p->text + t->start, more);
}

/* "<what>, found <token>" at the current token. */
static void fail_expected(parser *p, const char *what)
{
    char d[48], msg[128];
    describe(p, cur(p), d, sizeof d);
    snprintf(msg, sizeof msg, "expected %s, found %s", what, d);
    fail_at(p, cur(p)->start, msg);
}

static bool enter(parser *p)
{
    if (++p->depth > SQL_MAX_DEPTH) {
        fail_at(p, cur(p)->start, "expression nested too deeply");
        return false;
    }
    return true;
}

void sql_node_free(sql_node *n)
{
    if (!n)
        return;
    json_decref(n->lit);
    for (size_t k = 0; k < n->nsegs; k++)
        free(n->segs[k].name);
    free(n->segs);
    for (size_t k = 0; k < n->nargs; k++)
        sql_node_free(n->args[k]);
    free(n->args);
    free(n);
}

static sql_node *new_node(parser *p, sql_node_kind kind, size_t start, size_t end)
{
    sql_node *n = calloc(1, sizeof *n);
    if (!n) {
        fail_oom(p);
        return NULL;
    }
    n->kind = kind;
    n->start = start;
    n->end = end;
    n->height = 1;
    return n;
}

/* Appends child to n (taking it); on failure frees child. */
static bool push_arg(parser *p, sql_node *n, sql_node *child)
{
    if ((n->nargs & (n->nargs - 1)) == 0) { /* 0, 1, 2, 4, …: grow to the next power */
        size_t cap = n->nargs ? n->nargs * 2 : 1;
        sql_node **a = realloc(n->args, cap * sizeof *a);
        if (!a) {
            sql_node_free(child);
            fail_oom(p);
            return false;
        }
        n->args = a;
    }
    n->args[n->nargs++] = child;
    return true;
}

/* Sets n's height from its children; a tree too high is an error at byte off. */
static bool seal(parser *p, sql_node *n, size_t off)
{
    int h = 0;
    for (size_t k = 0; k < n->nargs; k++)
        if (n->args[k]->height > h)
            h = n->args[k]->height;
    n->height = h + 1;
    if (n->height > SQL_MAX_DEPTH) {
        fail_at(p, off, "expression nested too deeply");
        return false;
    }
    return true;
}

/* A node of kind over a and b (both taken, freed on failure); op at byte off. */
static sql_node *binary(parser *p, sql_node_kind kind, int op, sql_node *a, sql_node *b, size_t off)
{
    sql_node *n = new_node(p, kind, a->start, b->end);
    if (!n) {
        sql_node_free(a);
        sql_node_free(b);
        return NULL;
    }
    n->op = op;
    if (!push_arg(p, n, a)) {
        sql_node_free(b);
        sql_node_free(n);
        return NULL;
    }
    if (!push_arg(p, n, b) || !seal(p, n, off)) {
        sql_node_free(n);
        return NULL;
    }
    return n;
}

static sql_node *parse_expr(parser *p);

static sql_node *literal(parser *p, json_t *v)
{
    const sql_tok *t = cur(p);
    if (!v) {
        fail_oom(p);
        return NULL;
    }
    sql_node *n = new_node(p, NK_LIT, t->start, t->start + t->len);
    if (!n) {
        json_decref(v);
        return NULL;
    }
    n->lit = v;
    advance(p);
    return n;
}

static bool add_seg(parser *p, sql_node *n, const char *name, size_t len, size_t index)
{
    sql_seg *s = realloc(n->segs, (n->nsegs + 1) * sizeof *s);
    if (!s) {
        fail_oom(p);
        return false;
    }
    n->segs = s;
    s = &s[n->nsegs];
    s->name = NULL;
    s->name_len = len;
    s->index = index;
    if (name) {
        if (!(s->name = malloc(len + 1))) {
            fail_oom(p);
            return false;
        }
        memcpy(s->name, name, len);
        s->name[len] = '\0';
    }
    n->nsegs++;
    return true;
}

/* Adds the field name of token t (a bare or quoted name) to path n. */
static bool add_name_seg(parser *p, sql_node *n, const sql_tok *t)
{
    if (t->kind == TK_QIDENT)
        return add_seg(p, n, t->str, t->str_len, 0);
    return add_seg(p, n, p->text + t->start, t->len, 0);
}

/* name ('.' name | '[' index ']')* — the current token is the first name. */
static sql_node *parse_path(parser *p)
{
    const sql_tok *t = cur(p);
    sql_node *n = new_node(p, NK_PATH, t->start, t->start + t->len);
    if (!n || !add_name_seg(p, n, t)) {
        sql_node_free(n);
        return NULL;
    }
    advance(p);
    for (;;) {
        if (cur(p)->kind == TK_DOT) {
            advance(p);
            t = cur(p);
            /* After a dot any name is a field, keywords included (a.null). */
            if (t->kind != TK_IDENT && t->kind != TK_QIDENT) {
                fail_expected(p, "a field name after '.'");
                break;
            }
            if (!add_name_seg(p, n, t))
                break;
        } else if (cur(p)->kind == TK_LBRACK) {
            advance(p);
            t = cur(p);
            if (t->kind != TK_INT) {
                fail_expected(p, "an array index (a non-negative integer)");
                break;
            }
            if (!add_seg(p, n, NULL, 0, (size_t)t->ival))
                break;
            advance(p);
            if (cur(p)->kind != TK_RBRACK) {
                fail_expected(p, "']'");
                break;
            }
        } else {
            return n;
        }
        n->end = cur(p)->start + cur(p)->len;
        advance(p);
    }
    sql_node_free(n);
    return NULL;
}

/* name '(' [expr (',' expr)*] ')' — the current token is the name. */
static sql_node *parse_call(parser *p)
{
    const sql_tok *name = cur(p);
    size_t k = 0, nfn = sizeof functions / sizeof functions[0];
    while (k < nfn && !tok_is(p, name, functions[k].name))
        k++;
    if (k == nfn) {
        char d[48], msg[80];
        describe(p, name, d, sizeof d);
        snprintf(msg, sizeof msg, "unknown function %s", d);
        fail_at(p, name->start, msg);
        return NULL;
    }
    sql_node *n = new_node(p, NK_FUNC, name->start, 0);
    if (!n)
        return NULL;
    n->fn = functions[k].fn;
    advance(p); /* name */
    advance(p); /* ( */
    if (cur(p)->kind != TK_RPAREN) {
        for (;;) {
            sql_node *a = parse_expr(p);
            if (!a || !push_arg(p, n, a))
                goto fail;
            if (cur(p)->kind != TK_COMMA)
                break;
            advance(p);
        }
        if (cur(p)->kind != TK_RPAREN) {
            fail_expected(p, "',' or ')'");
            goto fail;
        }
    }
    n->end = cur(p)->start + cur(p)->len;
    advance(p);
    int min = functions[k].min, max = functions[k].max;
    if ((int)n->nargs < min || (max >= 0 && (int)n->nargs > max)) {
        char msg[96];
        const char *fname = functions[k].name;
        if (max == 0)
            snprintf(msg, sizeof msg, "%s() takes no arguments", fname);
        else if (max < 0)
            snprintf(msg, sizeof msg, "%s() takes at least %d argument%s", fname, min,
                     min == 1 ? "" : "s");
        else if (min == max)
            snprintf(msg, sizeof msg, "%s() takes %d argument%s", fname, min, min == 1 ? "" : "s");
        else
            snprintf(msg, sizeof msg, "%s() takes %d to %d arguments", fname, min, max);
        fail_at(p, n->start, msg);
        goto fail;
    }
    if (!seal(p, n, n->start))
        goto fail;
    return n;
fail:
    sql_node_free(n);
    return NULL;
}

static sql_node *parse_primary(parser *p)
{
    const sql_tok *t = cur(p);
    switch (t->kind) {
    case TK_INT: return literal(p, json_integer(t->ival));
    case TK_REAL: return literal(p, json_real(t->rval));
    case TK_STRING: return literal(p, json_stringn(t->str, t->str_len));
    case TK_QIDENT: return parse_path(p);
    case TK_LPAREN: {
        size_t open = t->start;
        advance(p);
        sql_node *n = parse_expr(p);
        if (!n)
            return NULL;
        if (cur(p)->kind != TK_RPAREN) {
            fail_expected(p, "')'");
            sql_node_free(n);
            return NULL;
        }
        /* The parentheses belong to the text of the expression (its default name). */
        n->start = open;
        n->end = cur(p)->start + cur(p)->len;
        advance(p);
        return n;
    }
    case TK_IDENT:
        if (kw(p, "true"))
            return literal(p, json_true());
        if (kw(p, "false"))
            return literal(p, json_false());
        if (kw(p, "null"))
            return literal(p, json_null());
        if (is_reserved(p, t))
            break;
        if (peek(p, 1)->kind == TK_LPAREN)
            return parse_call(p);
        return parse_path(p);
    default: break;
    }
    fail_expected(p, "an expression");
    return NULL;
}

static sql_node *parse_unary(parser *p)
{
    const sql_tok *t = cur(p);
    if (t->kind != TK_MINUS && t->kind != TK_PLUS)
        return parse_primary(p);
    int op = t->kind;
    size_t start = t->start;
    if (!enter(p))
        return NULL;
    advance(p);
    sql_node *x = parse_unary(p);
    p->depth--;
    if (!x)
        return NULL;
    sql_node *n = new_node(p, NK_NEG, start, x->end);
    if (!n) {
        sql_node_free(x);
        return NULL;
    }
    n->op = op;
    if (!push_arg(p, n, x) || !seal(p, n, start)) {
        sql_node_free(n);
        return NULL;
    }
    return n;
}

static sql_node *parse_mul(parser *p)
{
    sql_node *l = parse_unary(p);
    while (l &&
           (cur(p)->kind == TK_STAR || cur(p)->kind == TK_SLASH || cur(p)->kind == TK_PERCENT)) {
        int op = cur(p)->kind;
        size_t off = cur(p)->start;
        advance(p);
        sql_node *r = parse_unary(p);
        if (!r) {
            sql_node_free(l);
            return NULL;
        }
        l = binary(p, NK_ARITH, op, l, r, off);
    }
    return l;
}

static sql_node *parse_add(parser *p)
{
    sql_node *l = parse_mul(p);
    while (l && (cur(p)->kind == TK_PLUS || cur(p)->kind == TK_MINUS)) {
        int op = cur(p)->kind;
        size_t off = cur(p)->start;
        advance(p);
        sql_node *r = parse_mul(p);
        if (!r) {
            sql_node_free(l);
            return NULL;
        }
        l = binary(p, NK_ARITH, op, l, r, off);
    }
    return l;
}

/* [NOT] LIKE pattern [ESCAPE 'c'] after subject l (taken). */
static sql_node *parse_like(parser *p, sql_node *l, bool negate, size_t off)
{
    sql_node *r = parse_add(p);
    if (!r) {
        sql_node_free(l);
        return NULL;
    }
    sql_node *n = binary(p, NK_LIKE, 0, l, r, off);
    if (!n)
        return NULL;
    n->negate = negate;
    if (kw(p, "escape")) {
        advance(p);
        const sql_tok *t = cur(p);
        if (t->kind != TK_STRING || sql_utf8_count(t->str, t->str_len) != 1) {
            fail_expected(p, "a one-character string after ESCAPE");
            sql_node_free(n);
            return NULL;
        }
        size_t i = 0;
        n->has_escape = true;
        n->escape = sql_utf8_next(t->str, t->str_len, &i);
        n->end = t->start + t->len;
        advance(p);
    }
    return n;
}

/* [NOT] IN '(' expr (',' expr)* ')' after subject l (taken). */
static sql_node *parse_in(parser *p, sql_node *l, bool negate, size_t off)
{
    sql_node *n = new_node(p, NK_IN, l->start, 0);
    if (!n) {
        sql_node_free(l);
        return NULL;
    }
    n->negate = negate;
    if (!push_arg(p, n, l))
        goto fail;
    if (cur(p)->kind != TK_LPAREN) {
        fail_expected(p, "'(' after IN");
        goto fail;
    }
    advance(p);
    for (;;) {
        sql_node *e = parse_expr(p);
        if (!e || !push_arg(p, n, e))
            goto fail;
        if (cur(p)->kind != TK_COMMA)
            break;
        advance(p);
    }
    if (cur(p)->kind != TK_RPAREN) {
        fail_expected(p, "',' or ')'");
        goto fail;
    }
    n->end = cur(p)->start + cur(p)->len;
    advance(p);
    if (!seal(p, n, off))
        goto fail;
    return n;
fail:
    sql_node_free(n);
    return NULL;
}

static sql_node *parse_cmp(parser *p)
{
    sql_node *l = parse_add(p);
    if (!l)
        return NULL;
    const sql_tok *t = cur(p);
    size_t off = t->start;
    if (t->kind >= TK_EQ && t->kind <= TK_GE) {
        int op = t->kind;
        advance(p);
        sql_node *r = parse_add(p);
        if (!r) {
            sql_node_free(l);
            return NULL;
        }
        return binary(p, NK_CMP, op, l, r, off);
    }
    if (kw(p, "is")) {
        advance(p);
        bool negate = false;
        if (kw(p, "not")) {
            negate = true;
            advance(p);
        }
        if (!kw(p, "null")) {
            fail_expected(p, negate ? "NULL after IS NOT" : "NULL or NOT NULL after IS");
            sql_node_free(l);
            return NULL;
        }
        sql_node *n = new_node(p, NK_ISNULL, l->start, cur(p)->start + cur(p)->len);
        if (!n) {
            sql_node_free(l);
            return NULL;
        }
        advance(p);
        n->negate = negate;
        if (!push_arg(p, n, l) || !seal(p, n, off)) {
            sql_node_free(n);
            return NULL;
        }
        return n;
    }
    bool negate = false;
    if (kw(p, "not")) {
        /* NOT after an operand only negates LIKE or IN. */
        advance(p);
        negate = true;
        if (!kw(p, "like") && !kw(p, "in")) {
            fail_expected(p, "LIKE or IN after NOT");
            sql_node_free(l);
            return NULL;
        }
    }
    if (kw(p, "like")) {
        advance(p);
        return parse_like(p, l, negate, off);
    }
    if (kw(p, "in")) {
        advance(p);
        return parse_in(p, l, negate, off);
    }
    return l;
}

static sql_node *parse_not(parser *p)
{
    if (!kw(p, "not"))
        return parse_cmp(p);
    size_t start = cur(p)->start;
    if (!enter(p))
        return NULL;
    advance(p);
    sql_node *x = parse_not(p);
    p->depth--;
    if (!x)
        return NULL;
    sql_node *n = new_node(p, NK_NOT, start, x->end);
    if (!n) {
        sql_node_free(x);
        return NULL;
    }
    if (!push_arg(p, n, x) || !seal(p, n, start)) {
        sql_node_free(n);
        return NULL;
    }
    return n;
}

/* A left-associative chain of one keyword operator: operand (word operand)*. */
static sql_node *parse_chain(parser *p, const char *word, sql_node_kind kind,
                             sql_node *(*operand)(parser *))
{
    sql_node *l = operand(p);
    while (l && kw(p, word)) {
        size_t off = cur(p)->start;
        advance(p);
        sql_node *r = operand(p);
        if (!r) {
            sql_node_free(l);
            return NULL;
        }
        l = binary(p, kind, 0, l, r, off);
    }
    return l;
}

static sql_node *parse_and(parser *p)
{
    return parse_chain(p, "and", NK_AND, parse_not);
}

static sql_node *parse_or(parser *p)
{
    return parse_chain(p, "or", NK_OR, parse_and);
}

static sql_node *parse_expr(parser *p)
{
    if (!enter(p))
        return NULL;
    sql_node *n = parse_or(p);
    p->depth--;
    return n;
}

void sql_free(sql_stmt *st)
{
    if (!st)
        return;
    for (size_t k = 0; k < st->nitems; k++) {
        sql_node_free(st->items[k].expr);
        free(st->items[k].name);
    }
    free(st->items);
    sql_node_free(st->where);
    free(st->text);
    free(st);
}

const char *sql_text(const sql_stmt *st)
{
    return st ? st->text : NULL;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* The output name of an expression without alias (sql.h "Output"). */
static bool default_name(parser *p, sql_item *it)
{
    const sql_node *e = it->expr;
    if (e->kind == NK_PATH) {
        size_t k = e->nsegs;
        while (k > 0 && !e->segs[k - 1].name)
            k--; /* a[0] is named a; the first segment always is a name */
        it->name_len = e->segs[k - 1].name_len;
        it->name = dup_n(e->segs[k - 1].name, it->name_len);
    } else {
        it->name_len = e->end - e->start;
        it->name = dup_n(p->text + e->start, it->name_len);
    }
    if (!it->name)
        fail_oom(p);
    return it->name != NULL;
}

/* One item of the select list into it (zeroed by the caller). */
static bool parse_item(parser *p, sql_item *it)
{
    if (cur(p)->kind == TK_STAR) {
        it->star = true;
        advance(p);
        return true;
    }
    if (!(it->expr = parse_expr(p)))
        return false;
    if (!kw(p, "as"))
        return default_name(p, it);
    advance(p);
    const sql_tok *t = cur(p);
    if (t->kind == TK_QIDENT || t->kind == TK_STRING) {
        it->name = dup_n(t->str, t->str_len);
        it->name_len = t->str_len;
    } else if (t->kind == TK_IDENT && !is_reserved(p, t)) {
        it->name = dup_n(p->text + t->start, t->len);
        it->name_len = t->len;
    } else {
        fail_expected(p, "a name after AS");
        return false;
    }
    if (!it->name) {
        fail_oom(p);
        return false;
    }
    advance(p);
    return true;
}

static bool parse_statement(parser *p, sql_stmt *st)
{
    if (!kw(p, "select")) {
        fail_expected(p, "SELECT");
        return false;
    }
    advance(p);
    if (kw(p, "where") || cur(p)->kind == TK_END) {
        fail_expected(p, "'*' or an expression");
        return false;
    }
    size_t cap = 0;
    for (;;) {
        if (st->nitems == cap) {
            size_t nc = cap ? cap * 2 : 4;
            sql_item *v = realloc(st->items, nc * sizeof *v);
            if (!v) {
                fail_oom(p);
                return false;
            }
            st->items = v, cap = nc;
        }
        sql_item *it = &st->items[st->nitems++];
        memset(it, 0, sizeof *it);
        if (!parse_item(p, it))
            return false;
        if (cur(p)->kind != TK_COMMA)
            break;
        advance(p);
    }
    if (kw(p, "where")) {
        advance(p);
        if (!(st->where = parse_expr(p)))
            return false;
    }
    if (kw(p, "from")) {
        fail_at(p, cur(p)->start,
                "FROM is not supported (a statement reads the message it is called with)");
        return false;
    }
    if (cur(p)->kind != TK_END) {
        char d[48], msg[80];
        describe(p, cur(p), d, sizeof d);
        snprintf(msg, sizeof msg, "unexpected %s", d);
        fail_at(p, cur(p)->start, msg);
        return false;
    }
    return true;
}

sql_stmt *sql_compile(const char *text, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!text) {
        snprintf(err, errlen, "no statement");
        return NULL;
    }
    sql_tok *toks;
    size_t ntoks;
    if (sql_lex(text, &toks, &ntoks, err, errlen) < 0)
        return NULL;
    parser p = {.text = text, .t = toks, .n = ntoks, .err = err, .errlen = errlen};
    sql_stmt *st = calloc(1, sizeof *st);
    if (!st || !(st->text = strdup(text))) {
        snprintf(err, errlen, "out of memory");
        sql_lex_free(toks, ntoks);
        free(st);
        return NULL;
    }
    bool ok = parse_statement(&p, st);
    sql_lex_free(toks, ntoks);
    if (!ok) {
        sql_free(st);
        return NULL;
    }
    return st;
}
