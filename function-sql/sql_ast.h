/* Internals shared by the SQL lexer, parser and evaluator: tokens, the syntax tree, the
 * compiled statement and the UTF-8 helpers. Not for users of sql.h. */
#ifndef BAETYL_FUNCTION_SQL_AST_H
#define BAETYL_FUNCTION_SQL_AST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sql.h"

typedef enum {
    TK_END,
    TK_IDENT,  /* bare name; keywords are recognised by the parser (case-insensitive) */
    TK_QIDENT, /* "quoted name" */
    TK_INT,
    TK_REAL,
    TK_STRING,
    TK_STAR,
    TK_COMMA,
    TK_DOT,
    TK_LPAREN,
    TK_RPAREN,
    TK_LBRACK,
    TK_RBRACK,
    TK_PLUS,
    TK_MINUS,
    TK_SLASH,
    TK_PERCENT,
    TK_EQ,
    TK_NE,
    TK_LT,
    TK_LE,
    TK_GT,
    TK_GE,
} sql_tok_kind;

typedef struct {
    sql_tok_kind kind;
    size_t start, len; /* bytes of the statement text */
    char *str;         /* TK_STRING, TK_QIDENT: unescaped text (malloc'd), str_len bytes */
    size_t str_len;
    long long ival; /* TK_INT */
    double rval;    /* TK_REAL */
} sql_tok;

/* Splits text into tokens ending with TK_END. Returns 0, or -1 with a syntax error. */
int sql_lex(const char *text, sql_tok **toks, size_t *ntoks, char *err, size_t errlen);
/* Frees what sql_lex returned. */
void sql_lex_free(sql_tok *toks, size_t ntoks);
/* Writes "syntax error at position N: <msg>" for byte offset off of text. */
void sql_syntax_error(char *err, size_t errlen, const char *text, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Length of the valid UTF-8 prefix of s[0..len). */
size_t sql_utf8_valid_prefix(const char *s, size_t len);
/* Decodes the code point at s[*i] (valid UTF-8 assumed) and advances *i. */
uint32_t sql_utf8_next(const char *s, size_t len, size_t *i);
/* Number of code points in valid UTF-8 s[0..len). */
size_t sql_utf8_count(const char *s, size_t len);

typedef enum {
    NK_LIT,    /* lit */
    NK_PATH,   /* segs */
    NK_FUNC,   /* fn, args */
    NK_NEG,    /* args[0] */
    NK_NOT,    /* args[0] */
    NK_ARITH,  /* op (TK_PLUS…TK_PERCENT), args[0..1] */
    NK_CMP,    /* op (TK_EQ…TK_GE), args[0..1] */
    NK_AND,    /* args[0..1] */
    NK_OR,     /* args[0..1] */
    NK_LIKE,   /* negate, args[0] subject, args[1] pattern; escape */
    NK_IN,     /* negate, args[0] subject, args[1..] list */
    NK_ISNULL, /* negate, args[0] */
} sql_node_kind;

typedef enum {
    FN_QOS,
    FN_TOPIC,
    FN_TIMESTAMP,
    FN_INVOKEID,
    FN_ABS,
    FN_ROUND,
    FN_FLOOR,
    FN_CEIL,
    FN_LOWER,
    FN_UPPER,
    FN_LENGTH,
    FN_CONCAT,
    FN_SUBSTRING,
} sql_fn;

typedef struct {
    char *name; /* field name (malloc'd), or NULL for an array index */
    size_t name_len;
    size_t index;
} sql_seg;

typedef struct sql_node sql_node;
struct sql_node {
    sql_node_kind kind;
    int op;      /* NK_ARITH, NK_CMP: the operator token kind */
    bool negate; /* NOT LIKE, NOT IN, IS NOT NULL */
    sql_fn fn;
    json_t *lit;
    sql_seg *segs;
    size_t nsegs;
    sql_node **args;
    size_t nargs;
    bool has_escape;
    uint32_t escape;   /* LIKE … ESCAPE: the escape character */
    size_t start, end; /* bytes of the statement text this expression spans */
    int height;        /* 1 for a leaf */
};

typedef struct {
    bool star;
    sql_node *expr; /* NULL for * */
    char *name;     /* output field name (malloc'd), NULL for * */
    size_t name_len;
} sql_item;

struct sql_stmt {
    char *text;
    sql_item *items;
    size_t nitems;
    sql_node *where; /* NULL when absent */
};

/* Frees a syntax tree (NULL is fine). */
void sql_node_free(sql_node *n);

#endif
