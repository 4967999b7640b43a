#!/usr/bin/env bash
# The README's main job (`make run` calls it with the install dir): runs the master of a
# native install in the foreground with the seed's example application — the hub on port
# 1883 (user test, password hahaha, route t -> t/topic) and the chapter 9 functions on
# topic t (Python -> t/py3hi, Node -> t/node8hi, SQL -> t/sqlfilter).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 INSTALL_DIR   (made by: make install PREFIX=INSTALL_DIR MODE=native)" >&2
  exit 2
fi
DIR=$(cd "$1" && pwd)
if [ ! -x "$DIR/bin/baetyl" ]; then
  echo "$0: $DIR/bin/baetyl not found: run make install PREFIX=$DIR MODE=native first" >&2
  exit 1
fi

cat <<EOF
Baetyl is starting in $DIR (native mode). Try it from a second terminal:

  mosquitto_sub -h 127.0.0.1 -p 1883 -u test -P hahaha -t 't/#' -v &
  mosquitto_pub -h 127.0.0.1 -p 1883 -u test -P hahaha -t t -m '{"id":1}'

You will see t/topic (the hub's route), then t/py3hi, t/node8hi and t/sqlfilter (the
Python, Node and SQL functions; the first message also starts their instances).
Logs: $DIR/var/log/baetyl/baetyl.log (master), $DIR/var/db/baetyl/localhub-log/ (hub),
$DIR/var/db/baetyl/function-manager-log/ (function-manager). Ctrl-C stops everything.

EOF
exec "$DIR/bin/baetyl" start -w "$DIR"
