/* The report's crypto (SPEC §15) and the volumes' MD5, on OpenSSL 3 (EVP only). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* err = what + OpenSSL's last error. */
static int ssl_fail(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
    return -1;
}

char *agent_base64(const unsigned char *buf, size_t len)
{
    if (len > (size_t)1 << 30)
        return NULL;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, buf, (int)len);
    return out;
}

int agent_aes_encrypt(const unsigned char key[32], const unsigned char *in, size_t inlen,
                      unsigned char **out, size_t *outlen, char *err, size_t errlen)
{
    static const unsigned char iv[16] = {0};
    *out = NULL;
    if (inlen > (size_t)1 << 30) {
        snprintf(err, errlen, "report too large");
        return -1;
    }
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char *buf = malloc(inlen + 16);
    int n1 = 0, n2 = 0, rc = -1;
    if (!ctx || !buf) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    /* PKCS#7 padding is EVP's default. */
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) != 1 ||
        EVP_EncryptUpdate(ctx, buf, &n1, in, (int)inlen) != 1 ||
        EVP_EncryptFinal_ex(ctx, buf + n1, &n2) != 1) {
        ssl_fail(err, errlen, "aes");
        goto out;
    }
    *out = buf;
    *outlen = (size_t)n1 + (size_t)n2;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

EVP_PKEY *agent_load_rsa_key(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!k) {
        char what[512];
        snprintf(what, sizeof what, "%s: not a PEM private key", path);
        ssl_fail(err, errlen, what);
        return NULL;
    }
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
        snprintf(err, errlen, "%s: not an RSA key (the report key is encrypted with RSA)", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

int agent_rsa_private_encrypt(EVP_PKEY *key, const unsigned char *in, size_t inlen,
                              unsigned char **out, size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    unsigned char *buf = NULL;
    size_t n = 0;
    int rc = -1;
    /* A signature without a digest is RSA_private_encrypt with type 1 padding. */
    if (!ctx || EVP_PKEY_sign_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_sign(ctx, NULL, &n, in, inlen) != 1) {
        ssl_fail(err, errlen, "rsa");
        goto out;
    }
    if (!(buf = malloc(n))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (EVP_PKEY_sign(ctx, buf, &n, in, inlen) != 1) {
        ssl_fail(err, errlen, "rsa");
        goto out;
    }
    *out = buf;
    *outlen = n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

char *agent_cert_serial(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        char what[512];
        snprintf(what, sizeof what, "%s: not a PEM certificate", path);
        ssl_fail(err, errlen, what);
        return NULL;
    }
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *dec = bn ? BN_bn2dec(bn) : NULL;
    char *r = dec ? strdup(dec) : NULL;
    if (!r)
        ssl_fail(err, errlen, "serial number");
    OPENSSL_free(dec);
    BN_free(bn);
    X509_free(x);
    return r;
}

int agent_file_md5(const char *path, char out[32], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = -1;
    if (!md || EVP_DigestInit_ex(md, EVP_md5(), NULL) != 1) {
        ssl_fail(err, errlen, "md5");
        goto out;
    }
    unsigned char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)n);
    }
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (EVP_DigestFinal_ex(md, dig, &dl) != 1 || dl != 16) {
        ssl_fail(err, errlen, "md5");
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)out, dig, 16);
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    close(fd);
    return rc;
}
