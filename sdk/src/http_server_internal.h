/* What the server's listener (http_server.c) and its connections (http_server_conn.c)
 * share. */
#ifndef BT_HTTP_SERVER_INTERNAL_H
#define BT_HTTP_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "baetyl/http_server.h"

typedef struct bt_httpd_conn {
    struct bt_http_server *s;
    int fd;
    void *state; /* on_accept's */
    struct bt_httpd_conn *prev, *next;
} bt_httpd_conn;

struct bt_http_server {
    bt_http_server_opts o; /* with the defaults filled in */
    char name[32];
    int fd;      /* listening */
    int wake[2]; /* a byte here stops the listener */
    pthread_t listener;
    pthread_attr_t conn_attr; /* detached, small stack */
    pthread_mutex_t mu;
    pthread_cond_t idle; /* the last connection closed */
    bt_httpd_conn *conns;
    unsigned n;
    bool stopping;
};

/* Serves c's requests until the client leaves, a limit closes it or the server stops. */
void bt_httpd_conn_serve(bt_httpd_conn *c);

#endif
