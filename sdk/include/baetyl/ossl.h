/* OpenSSL loaded on first use (issue #18): a process maps libssl and libcrypto only when it
 * needs them (a TLS address or listener, a certificate metric, a WebSocket handshake, a
 * digest), since their relocated data costs ~0.6 MB of private memory in every process that
 * maps them. Code includes this header instead of the OpenSSL ones and calls bt_ossl_load()
 * before its first OpenSSL call; the OpenSSL names below then go through a table filled by
 * dlopen(). A static build links OpenSSL itself and fills the table at link time
 * (ossl.c built with BT_OSSL_LINKED). */
#ifndef BAETYL_OSSL_H
#define BAETYL_OSSL_H

#include <stddef.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The sonames dlopen()ed (the OpenSSL 3 ABI the headers describe). */
#ifndef BT_LIBSSL_SONAME
#define BT_LIBSSL_SONAME "libssl.so.3"
#endif
#ifndef BT_LIBCRYPTO_SONAME
#define BT_LIBCRYPTO_SONAME "libcrypto.so.3"
#endif

/* Every OpenSSL function the SDK and the modules call through the table. */
#define BT_OSSL_CRYPTO_FUNCS(X)      \
    X(ASN1_TIME_diff)                \
    X(ASN1_TIME_free)                \
    X(ASN1_TIME_set)                 \
    X(ERR_clear_error)               \
    X(ERR_error_string_n)            \
    X(ERR_get_error)                 \
    X(ERR_peek_error)                \
    X(ERR_peek_last_error)           \
    X(ERR_reason_error_string)       \
    X(EVP_DecodeBlock)               \
    X(EVP_Digest)                    \
    X(EVP_EncodeBlock)               \
    X(EVP_sha256)                    \
    X(PEM_read_X509)                 \
    X(RAND_bytes)                    \
    X(SHA1)                          \
    X(X509_VERIFY_PARAM_set1_ip_asc) \
    X(X509_free)                     \
    X(X509_get0_notAfter)            \
    X(X509_verify_cert_error_string)
#define BT_OSSL_SSL_FUNCS(X)              \
    X(SSL_CTX_check_private_key)          \
    X(SSL_CTX_ctrl)                       \
    X(SSL_CTX_free)                       \
    X(SSL_CTX_set_alpn_protos)            \
    X(SSL_CTX_set_alpn_select_cb)         \
    X(SSL_CTX_load_verify_locations)      \
    X(SSL_CTX_new)                        \
    X(SSL_CTX_set_client_CA_list)         \
    X(SSL_CTX_set_default_verify_paths)   \
    X(SSL_CTX_set_options)                \
    X(SSL_CTX_set_session_id_context)     \
    X(SSL_CTX_set_verify)                 \
    X(SSL_CTX_use_PrivateKey_file)        \
    X(SSL_CTX_use_certificate_chain_file) \
    X(SSL_connect)                        \
    X(SSL_ctrl)                           \
    X(SSL_do_handshake)                   \
    X(SSL_free)                           \
    X(SSL_get0_alpn_selected)             \
    X(SSL_get0_param)                     \
    X(SSL_get1_peer_certificate)          \
    X(SSL_get_error)                      \
    X(SSL_get_verify_result)              \
    X(SSL_load_client_CA_file)            \
    X(SSL_new)                            \
    X(SSL_pending)                        \
    X(SSL_read)                           \
    X(SSL_select_next_proto)              \
    X(SSL_set1_host)                      \
    X(SSL_set_accept_state)               \
    X(SSL_set_connect_state)              \
    X(SSL_set_fd)                         \
    X(SSL_shutdown)                       \
    X(SSL_write)                          \
    X(TLS_client_method)                  \
    X(TLS_server_method)

#define BT_OSSL_MEMBER(f) __typeof__(&f) f;
struct bt_ossl_table {
    BT_OSSL_CRYPTO_FUNCS(BT_OSSL_MEMBER)
    BT_OSSL_SSL_FUNCS(BT_OSSL_MEMBER)
};
extern struct bt_ossl_table bt_ossl;

/* Loads libssl and libcrypto once (thread-safe; later calls are cheap). 0, or -1 with err =
 * "OpenSSL 3 (libssl.so.3), which cannot be loaded: <why>": the caller prefixes the setting
 * that asked for it ("<setting>: TLS needs "). */
int bt_ossl_load(char *err, size_t errlen);

/* SHA-256 of n bytes into out (32 bytes): 0, or -1 with err when OpenSSL is missing. */
int bt_sha256(const void *p, size_t n, unsigned char out[32], char *err, size_t errlen);

/* The OpenSSL names, through the table (OpenSSL's own macros, like SSL_CTX_set_mode, expand
 * to these too). ossl.c, which fills the table, sees the real functions. */
#ifndef BT_OSSL_IMPL
#define ASN1_TIME_diff (bt_ossl.ASN1_TIME_diff)
#define ASN1_TIME_free (bt_ossl.ASN1_TIME_free)
#define ASN1_TIME_set (bt_ossl.ASN1_TIME_set)
#define ERR_clear_error (bt_ossl.ERR_clear_error)
#define ERR_error_string_n (bt_ossl.ERR_error_string_n)
#define ERR_get_error (bt_ossl.ERR_get_error)
#define ERR_peek_error (bt_ossl.ERR_peek_error)
#define ERR_peek_last_error (bt_ossl.ERR_peek_last_error)
#define ERR_reason_error_string (bt_ossl.ERR_reason_error_string)
#define EVP_DecodeBlock (bt_ossl.EVP_DecodeBlock)
#define EVP_Digest (bt_ossl.EVP_Digest)
#define EVP_EncodeBlock (bt_ossl.EVP_EncodeBlock)
#define EVP_sha256 (bt_ossl.EVP_sha256)
#define PEM_read_X509 (bt_ossl.PEM_read_X509)
#define RAND_bytes (bt_ossl.RAND_bytes)
#define SHA1 (bt_ossl.SHA1)
#define X509_VERIFY_PARAM_set1_ip_asc (bt_ossl.X509_VERIFY_PARAM_set1_ip_asc)
#define X509_free (bt_ossl.X509_free)
#define X509_get0_notAfter (bt_ossl.X509_get0_notAfter)
#define X509_verify_cert_error_string (bt_ossl.X509_verify_cert_error_string)
#define SSL_CTX_check_private_key (bt_ossl.SSL_CTX_check_private_key)
#define SSL_CTX_ctrl (bt_ossl.SSL_CTX_ctrl)
#define SSL_CTX_free (bt_ossl.SSL_CTX_free)
#define SSL_CTX_set_alpn_protos (bt_ossl.SSL_CTX_set_alpn_protos)
#define SSL_CTX_set_alpn_select_cb (bt_ossl.SSL_CTX_set_alpn_select_cb)
#define SSL_CTX_load_verify_locations (bt_ossl.SSL_CTX_load_verify_locations)
#define SSL_CTX_new (bt_ossl.SSL_CTX_new)
#define SSL_CTX_set_client_CA_list (bt_ossl.SSL_CTX_set_client_CA_list)
#define SSL_CTX_set_default_verify_paths (bt_ossl.SSL_CTX_set_default_verify_paths)
#define SSL_CTX_set_options (bt_ossl.SSL_CTX_set_options)
#define SSL_CTX_set_session_id_context (bt_ossl.SSL_CTX_set_session_id_context)
#define SSL_CTX_set_verify (bt_ossl.SSL_CTX_set_verify)
#define SSL_CTX_use_PrivateKey_file (bt_ossl.SSL_CTX_use_PrivateKey_file)
#define SSL_CTX_use_certificate_chain_file (bt_ossl.SSL_CTX_use_certificate_chain_file)
#define SSL_connect (bt_ossl.SSL_connect)
#define SSL_ctrl (bt_ossl.SSL_ctrl)
#define SSL_do_handshake (bt_ossl.SSL_do_handshake)
#define SSL_free (bt_ossl.SSL_free)
#define SSL_get0_alpn_selected (bt_ossl.SSL_get0_alpn_selected)
#define SSL_get0_param (bt_ossl.SSL_get0_param)
#define SSL_get1_peer_certificate (bt_ossl.SSL_get1_peer_certificate)
#define SSL_get_error (bt_ossl.SSL_get_error)
#define SSL_get_verify_result (bt_ossl.SSL_get_verify_result)
#define SSL_load_client_CA_file (bt_ossl.SSL_load_client_CA_file)
#define SSL_new (bt_ossl.SSL_new)
#define SSL_pending (bt_ossl.SSL_pending)
#define SSL_read (bt_ossl.SSL_read)
#define SSL_select_next_proto (bt_ossl.SSL_select_next_proto)
#define SSL_set1_host (bt_ossl.SSL_set1_host)
#define SSL_set_accept_state (bt_ossl.SSL_set_accept_state)
#define SSL_set_connect_state (bt_ossl.SSL_set_connect_state)
#define SSL_set_fd (bt_ossl.SSL_set_fd)
#define SSL_shutdown (bt_ossl.SSL_shutdown)
#define SSL_write (bt_ossl.SSL_write)
#define TLS_client_method (bt_ossl.TLS_client_method)
#define TLS_server_method (bt_ossl.TLS_server_method)
#endif

#endif
