/* SQL lexer: statement text → tokens, plus the UTF-8 helpers and the error format every
 * stage uses ("syntax error at position N: …", N counted in characters). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_ast.h"
#include "baetyl/util.h"

size_t sql_utf8_valid_prefix(const char *s, size_t len)
{
    return bt_utf8_valid_prefix(s, len);
}

uint32_t sql_utf8_next(const char *s, size_t len, size_t *i)
{
    uint32_t cp;
    size_t n = bt_utf8_decode((const uint8_t *)s + *i, len - *i, &cp);
    if (n == 0) { /* text is validated before it gets here; a stray byte is one character */
        cp = (unsigned char)s[*i];
        n = 1;
    }
    *i += n;
    return cp;
}

size_t sql_utf8_count(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

void sql_syntax_error(char *err, size_t errlen, const char *text, size_t off, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    /* Characters before off: every byte that does not continue a UTF-8 sequence. */
    size_t pos = 1 + sql_utf8_count(text, off);
    int n = snprintf(err, errlen, "syntax error at position %zu: ", pos);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static bool lex_ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool lex_ident_char(unsigned char c)
{
    return lex_ident_start(c) || (c >= '0' && c <= '9');
}

static bool lex_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A quoted string or name starting at text[*i] == q; '' (or "") stands for one quote. */
static int lex_quoted(const char *text, size_t *i, char q, sql_tok *t, char *err, size_t errlen)
{
    size_t open = *i, j = *i + 1;
    size_t cap = 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (;;) {
        char c = text[j];
        if (c == '\0') {
            free(buf);
            sql_syntax_error(err, errlen, text, open, "unterminated %s",
                             q == '\'' ? "string" : "quoted name");
            return -1;
        }
        if (c == q) {
            if (text[j + 1] != q)
                break;
            j++; /* doubled quote: one literal quote */
        }
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            buf = nb, cap *= 2;
        }
        buf[n++] = c;
        j++;
    }
    buf[n] = '\0';
    if (q == '"' && n == 0) {
        free(buf);
        sql_syntax_error(err, errlen, text, open, "empty quoted name");
        return -1;
    }
    t->kind = q == '\'' ? TK_STRING : TK_QIDENT;
    t->str = buf;
    t->str_len = n;
    *i = j + 1;
    return 0;
}

/* digits ['.' digits] [(e|E) [+-] digits], not followed by a name character. */
static int lex_number(const char *text, size_t *i, sql_tok *t, char *err, size_t errlen)
{
    size_t s = *i, j = *i;
    bool real = false;
    while (lex_digit((unsigned char)text[j]))
        j++;
    if (text[j] == '.' && lex_digit((unsigned char)text[j + 1])) {
        real = true;
        j++;
        while (lex_digit((unsigned char)text[j]))
            j++;
    }
    if (text[j] == 'e' || text[j] == 'E') {
        size_t k = j + 1;
        if (text[k] == '+' || text[k] == '-')
            k++;
        if (!lex_digit((unsigned char)text[k])) {
            sql_syntax_error(err, errlen, text, s, "invalid number");
            return -1;
        }
        real = true;
        j = k;
        while (lex_digit((unsigned char)text[j]))
            j++;
    }
    if (lex_ident_char((unsigned char)text[j]) || text[j] == '.') {
        sql_syntax_error(err, errlen, text, s, "invalid number");
        return -1;
    }
    char tmp[64];
    char *num = tmp;
    size_t n = j - s;
    if (n >= sizeof tmp && !(num = malloc(n + 1))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(num, text + s, n);
    num[n] = '\0';
    int rc = 0;
    errno = 0;
    if (!real) {
        long long v = strtoll(num, NULL, 10);
        if (errno == ERANGE) {
            real = true; /* beyond 64 bits: read it as a float */
        } else {
            t->kind = TK_INT;
            t->ival = v;
        }
    }
    if (real) {
        double d = strtod(num, NULL);
        if (!isfinite(d)) {
            sql_syntax_error(err, errlen, text, s, "number out of range");
            rc = -1;
        }
        t->kind = TK_REAL;
        t->rval = d;
    }
    if (num != tmp)
        free(num);
    *i = j;
    return rc;
}

void sql_lex_free(sql_tok *toks, size_t ntoks)
{
    if (!toks)
        return;
    for (size_t i = 0; i < ntoks; i++)
        free(toks[i].str);
    free(toks);
}

int sql_lex(const char *text, sql_tok **toks, size_t *ntoks, char *err, size_t errlen)
{
    *toks = NULL;
    *ntoks = 0;
    size_t len = strlen(text);
    size_t valid = sql_utf8_valid_prefix(text, len);
    if (valid < len) {
        sql_syntax_error(err, errlen, text, valid, "invalid UTF-8");
        return -1;
    }
    size_t cap = 16, n = 0;
    sql_tok *v = malloc(cap * sizeof *v);
    if (!v)
        goto oom;
    size_t i = 0;
    for (;;) {
        while (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r' ||
               text[i] == '\f' || text[i] == '\v')
            i++;
        if (n == cap) {
            sql_tok *nv = realloc(v, cap * 2 * sizeof *v);
            if (!nv)
                goto oom;
            v = nv, cap *= 2;
        }
        sql_tok *t = &v[n];
        memset(t, 0, sizeof *t);
        t->start = i;
        unsigned char c = (unsigned char)text[i];
        if (c == '\0') {
            t->kind = TK_END;
            n++;
            break;
        }
        if (lex_ident_start(c)) {
            while (lex_ident_char((unsigned char)text[i]))
                i++;
            t->kind = TK_IDENT;
        } else if (lex_digit(c)) {
            if (lex_number(text, &i, t, err, errlen) < 0)
                goto fail;
        } else if (c == '\'' || c == '"') {
            if (lex_quoted(text, &i, (char)c, t, err, errlen) < 0)
                goto fail;
        } else {
            char d = text[i + 1];
            size_t w = 1;
            switch (c) {
            case '*': t->kind = TK_STAR; break;
            case ',': t->kind = TK_COMMA; break;
            case '.': t->kind = TK_DOT; break;
            case '(': t->kind = TK_LPAREN; break;
            case ')': t->kind = TK_RPAREN; break;
            case '[': t->kind = TK_LBRACK; break;
            case ']': t->kind = TK_RBRACK; break;
            case '+': t->kind = TK_PLUS; break;
            case '-': t->kind = TK_MINUS; break;
            case '/': t->kind = TK_SLASH; break;
            case '%': t->kind = TK_PERCENT; break;
            case '=': t->kind = TK_EQ; break;
            case '<':
                t->kind = d == '=' ? TK_LE : d == '>' ? TK_NE : TK_LT;
                w = d == '=' || d == '>' ? 2 : 1;
                break;
            case '>':
                t->kind = d == '=' ? TK_GE : TK_GT;
                w = d == '=' ? 2 : 1;
                break;
            case '!':
                if (d == '=') {
                    t->kind = TK_NE;
                    w = 2;
                    break;
                }
                /* fall through */
            default:
                if (c < 0x20 || c == 0x7f)
                    sql_syntax_error(err, errlen, text, i, "unexpected character 0x%02x", c);
                else
                    sql_syntax_error(err, errlen, text, i, "unexpected character '%c'", c);
                goto fail;
            }
            i += w;
        }
        t->len = i - t->start;
        n++;
    }
    *toks = v;
    *ntoks = n;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    sql_lex_free(v, n);
    return -1;
}
