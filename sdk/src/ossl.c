/* The OpenSSL table of baetyl/ossl.h: filled by dlopen() on first use, or, built with
 * BT_OSSL_LINKED (static images), from the OpenSSL linked into the program. */
#define BT_OSSL_IMPL
#include "baetyl/ossl.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#ifdef BT_OSSL_LINKED

#define BT_OSSL_LINK(f) .f = f,
struct bt_ossl_table bt_ossl = {BT_OSSL_CRYPTO_FUNCS(BT_OSSL_LINK) BT_OSSL_SSL_FUNCS(BT_OSSL_LINK)};

int bt_ossl_load(char *err, size_t errlen)
{
    return 0;
}

#else

#include <dlfcn.h>

struct bt_ossl_table bt_ossl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char why[256]; /* empty when loaded */

static void *open_lib(const char *soname)
{
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "OpenSSL 3 (%s), which cannot be loaded: %s", soname,
                 e ? e : "unknown error");
    }
    return h;
}

/* dlsym returns void *; the table's members are function pointers (POSIX allows it). */
#define BT_OSSL_SYM(lib, f)                                  \
    if (!why[0] && !(*(void **)&bt_ossl.f = dlsym(lib, #f))) \
        snprintf(why, sizeof why, "OpenSSL 3 (%s), which lacks %s", BT_LIBSSL_SONAME, #f);
#define BT_OSSL_CRYPTO(f) BT_OSSL_SYM(crypto, f)
#define BT_OSSL_SSL(f) BT_OSSL_SYM(ssl, f)

static void load(void)
{
    void *crypto = open_lib(BT_LIBCRYPTO_SONAME);
    void *ssl = crypto ? open_lib(BT_LIBSSL_SONAME) : NULL;
    if (!ssl)
        return;
    BT_OSSL_CRYPTO_FUNCS(BT_OSSL_CRYPTO)
    BT_OSSL_SSL_FUNCS(BT_OSSL_SSL)
    /* Kept loaded for the life of the process: OpenSSL's own atexit handlers live there. */
}

int bt_ossl_load(char *err, size_t errlen)
{
    pthread_once(&once, load);
    if (!why[0])
        return 0;
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return -1;
}

#endif

int bt_sha256(const void *p, size_t n, unsigned char out[32], char *err, size_t errlen)
{
    if (bt_ossl_load(err, errlen) < 0)
        return -1;
    unsigned int len = 0;
    if (!bt_ossl.EVP_Digest(p, n, out, &len, bt_ossl.EVP_sha256(), NULL) || len != 32) {
        if (err && errlen)
            snprintf(err, errlen, "sha256 failed");
        return -1;
    }
    return 0;
}
