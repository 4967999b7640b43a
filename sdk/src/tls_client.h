/* The TLS client side shared by the MQTT client's transport and bt_http_request: the
 * SSL_CTX (CA, client certificate and key), the SSL on a connected socket (SNI, the peer's
 * name or address checked) and why an SSL call failed. OpenSSL goes through baetyl/ossl.h. */
#ifndef BT_TLS_CLIENT_H
#define BT_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "baetyl/ossl.h"

/* OpenSSL's queued errors as one line ("unknown TLS error" when none); clears them. */
void bt_tls_errors(char *buf, size_t len);
/* A new TLS 1.2+ context with partial writes (server or client side), nothing loaded yet;
 * NULL with err. OpenSSL must be loaded. */
SSL_CTX *bt_tls_ctx_new(bool server, char *err, size_t errlen);
/* A TLS 1.2+ client context verifying the peer against ca (NULL or "": the system store),
 * with the client certificate cert and its key when cert is set. OpenSSL must be loaded.
 * The context, or NULL with err naming the setting ("ca: cannot load ...", "key: ..."). */
SSL_CTX *bt_tls_client_ctx(const char *ca, const char *cert, const char *key, char *err,
                           size_t errlen);
/* An SSL on the connected socket fd for host (SNI unless an address; its name or address
 * checked against the certificate unless insecure). NULL with err. */
SSL *bt_tls_client_ssl(SSL_CTX *ctx, int fd, const char *host, bool insecure, char *err,
                       size_t errlen);
/* Why the SSL call that returned rc failed: the certificate's problem during the handshake,
 * the socket's error, the peer closing (closed names it: "connection closed by broker") or
 * OpenSSL's queue. */
void bt_tls_fail_reason(SSL *ssl, int rc, bool handshake, const char *closed, char *why,
                        size_t len);

#endif
