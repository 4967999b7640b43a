/* The TLS client side shared by the MQTT client and the HTTPS client (tls_client.h). */
#include "tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

void bt_tls_errors(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(buf, len, "unknown TLS error");
        return;
    }
    ERR_error_string_n(e, buf, len);
    ERR_clear_error();
}

SSL_CTX *bt_tls_ctx_new(bool server, char *err, size_t errlen)
{
    char why[200];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        bt_tls_errors(why, sizeof why);
        snprintf(err, errlen, "tls: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

SSL_CTX *bt_tls_client_ctx(const char *ca, const char *cert, const char *key, char *err,
                           size_t errlen)
{
    char why[200];
    SSL_CTX *ctx = bt_tls_ctx_new(false, err, errlen);
    if (!ctx)
        return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca && *ca) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            bt_tls_errors(why, sizeof why);
            snprintf(err, errlen, "ca: cannot load %.200s: %s", ca, why);
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        bt_tls_errors(why, sizeof why);
        snprintf(err, errlen, "tls: no system CA store: %s", why);
        goto fail;
    }
    if (cert && *cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
            bt_tls_errors(why, sizeof why);
            snprintf(err, errlen, "cert: cannot load %.200s: %s", cert, why);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
                ERR_clear_error();
                snprintf(err, errlen, "key: %.200s does not match cert %.200s", key, cert);
                goto fail;
            }
            bt_tls_errors(why, sizeof why);
            snprintf(err, errlen, "key: cannot load %.200s: %s", key, why);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ERR_clear_error();
            snprintf(err, errlen, "key: does not match cert %.200s", cert);
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static bool is_ip(const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

SSL *bt_tls_client_ssl(SSL_CTX *ctx, int fd, const char *host, bool insecure, char *err,
                       size_t errlen)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        char why[200];
        bt_tls_errors(why, sizeof why);
        snprintf(err, errlen, "tls: %s", why);
        if (ssl)
            SSL_free(ssl);
        return NULL;
    }
    bool ip = is_ip(host);
    if (!ip)
        SSL_set_tlsext_host_name(ssl, host);
    if (!insecure) {
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                    : SSL_set1_host(ssl, host);
        if (ok != 1) {
            snprintf(err, errlen, "tls: cannot check the name %s", host);
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

void bt_tls_fail_reason(SSL *ssl, int rc, bool handshake, const char *closed, char *why, size_t len)
{
    int e = SSL_get_error(ssl, rc);
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK && handshake) {
        snprintf(why, len, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(why, len, "%s", errno ? strerror(errno) : closed);
    } else if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(why, len, "%s", closed);
    } else {
        bt_tls_errors(why, len);
    }
}
