# Helpers shared by the integration scripts, sourced by them (bash):
#
#   . "$(dirname "$0")/lib.sh"
#
# free_port [udp]   a loopback port no socket uses now (TCP, or UDP), from
#                   20000 to 31999: below Linux's ephemeral range (32768 and
#                   up), so no outgoing connection takes it before the node
#                   binds it; 50 tries, then status 1
# until_true S CMD  run CMD every 0.1 s until it succeeds, at most S
#                   seconds (10 tries a second); status 1 if it never did
#
# Checks, for a script that has not defined its own (several define theirs
# before sourcing this file; theirs are kept):
#
# ok MSG / nok MSG [DETAIL]   count and print "ok - MSG" / "not ok - MSG";
#                   nok prints DETAIL (else $status and $body, if set) as
#                   "#   " lines
# check MSG COND [DETAIL]     eval COND: ok MSG, or nok MSG DETAIL
# finish            print "N passed, M failed" and exit, non-zero if M > 0
#
# Nodes on loopback, for a script that sets BIN (the stallmesh binary) and
# TMP (its directory; node NODE's is $TMP/NODE, its output $TMP/NODE.out and
# $TMP/NODE.log) and declares `declare -A PID HP MP ARGS` (each node's PID,
# HTTP port, mesh port, run arguments kept for restarts):
#
# sm NODE ARGS...   the CLI on NODE's directory
# node_id NODE      its id (64 hex digits)
# start NODE [RUN ARGS...]   `run` with HTTP and a mesh listener on
#                   127.0.0.1; waits up to 10 s for /readyz.  A node with no
#                   ports yet gets free ones, and others if it does not come
#                   up (5 tries); one whose ports were set (its mesh port is
#                   in tokens already given, or it ran before) keeps them
#                   and has one try.  ARGS replace those kept for NODE.  If
#                   it fails, $start_rc is the last try's exit status (137:
#                   it never got ready and was killed).
# stop NODE         SIGTERM by PID, SIGKILL after 5 s
# stop_nodes        SIGKILL every node started, by PID (for a cleanup trap)
# url NODE / get NODE PATH   its base URL / a GET of PATH (body on stdout)
# call NODE METHOD PATH [BODY] [FROM] [TOKEN yes|no]
#                   the JSON API from source address FROM (default
#                   127.0.0.1), with NODE's token if TOKEN is yes (default
#                   no); sets $status (and $code, the same), $body and
#                   $headers (the response's).  A node answers writes 503
#                   recovering for about 1.5 s after its start (it checks its
#                   own log with its peers): such an answer is retried every
#                   0.1 s, for up to 10 s.
# req NODE METHOD PATH [BODY]   call with NODE's token, from 127.0.0.1
# js JQ             jq -r JQ on $body
# iso SECONDS       an RFC 3339 UTC time SECONDS from now (may be negative)
# wait_until ISO    sleep until that time has passed (at most 30 s)
#
# Variables a script may set for these (before it starts its nodes; a
# prefix on one call, `MESH_HOST=0.0.0.0 start B`, sets one for that call):
#
# NODE_ARGS         run arguments every node gets before its own (say
#                   `--log-level warn`); none by default
# MESH_HOST         the mesh listener's host (default 127.0.0.1)
# START_TRIES       tries of a node with no ports yet (default 5; 1 for a
#                   script whose nodes are meant to fail: a failure is not
#                   taken for a port clash and retried)
# START_WAIT        seconds start waits for /readyz (default 10)
# CALL_TIMEOUT      seconds a call may take (curl --max-time, default 10)
# RECOVERING_WAIT   seconds call retries a 503 recovering (default 10; 0
#                   returns the first answer, for a script that checks the
#                   recovering answers themselves)
#
# Scripts with other needs (a node started with no mesh listener, its log
# elsewhere) keep their own start, stop and req, defined after sourcing.

free_port() {
    local p flag=-Htan
    [ "${1:-}" = udp ] && flag=-Huan
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 12000))
        [ -z "$(ss $flag "sport = :$p" 2>/dev/null)" ] && { echo $p; return 0; }
    done
    return 1
}

until_true() {
    local tries=$(($1 * 10))
    shift
    for _ in $(seq 1 $tries); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

declare -F ok >/dev/null || ok() { pass=$((pass + 1)); echo "ok - $1"; }
declare -F nok >/dev/null || nok() {
    fail=$((fail + 1)); echo "not ok - $1"
    if [ -n "${2:-}" ]; then
        printf '%s\n' "$2" | head -n 20 | sed 's/^/#   /'
    elif [ -n "${body:-}" ]; then
        printf '#   status=%s body=%s\n' "${status:-}" "$body" | head -c 600 && echo
    fi
}
declare -F check >/dev/null || check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }
declare -F finish >/dev/null || finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

sm() { local n=$1; shift; "$BIN" --dir "$TMP/$n" "$@"; }
node_id() { sm "$1" id --json | jq -r .node; }

start() {
    local n=$1 fixed=${HP[$1]:+yes}
    shift
    [ $# -gt 0 ] && ARGS[$n]="$*"
    start_rc=
    for _ in $(seq 1 "${START_TRIES:-5}"); do
        if [ -z "${HP[$n]}" ]; then HP[$n]=$(free_port); MP[$n]=$(free_port); fi
        # shellcheck disable=SC2086
        "$BIN" --dir "$TMP/$n" run --http "127.0.0.1:${HP[$n]}" \
            --listen "tcp://${MESH_HOST:-127.0.0.1}:${MP[$n]}" ${NODE_ARGS:-} ${ARGS[$n]} \
            >>"$TMP/$n.out" 2>>"$TMP/$n.log" &
        PID[$n]=$!
        for _ in $(seq 1 $((${START_WAIT:-10} * 10))); do
            curl -s -o /dev/null --max-time 1 "http://127.0.0.1:${HP[$n]}/readyz" && return 0
            kill -0 "${PID[$n]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${PID[$n]}" 2>/dev/null; wait "${PID[$n]}" 2>/dev/null; start_rc=$?; PID[$n]=
        [ -n "$fixed" ] && return 1
        HP[$n]=
    done
    return 1
}

stop() {
    local n=$1 p=${PID[$1]}
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    PID[$n]=
}

stop_nodes() {
    local n
    for n in "${!PID[@]}"; do [ -n "${PID[$n]}" ] && kill -KILL "${PID[$n]}" 2>/dev/null; done
    for n in "${!PID[@]}"; do [ -n "${PID[$n]}" ] && wait "${PID[$n]}" 2>/dev/null; done
    return 0
}

url() { echo "http://127.0.0.1:${HP[$1]}"; }
get() { curl -s --max-time 5 "$(url "$1")$2"; }

call() {
    local n=$1 m=$2 p=$3 data=${4:-} from=${5:-127.0.0.1} tok=${6:-no} i
    local tries=$((${RECOVERING_WAIT:-10} * 10))
    local args=(-s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time "${CALL_TIMEOUT:-10}"
                --interface "$from" -X "$m")
    [ "$tok" = yes ] && args+=(-H "Authorization: Bearer $(cat "$TMP/$n/api-token")")
    [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
    for ((i = 1; ; i++)); do
        status=$(curl "${args[@]}" "$(url "$n")$p")
        body=$(cat "$TMP/body" 2>/dev/null)
        headers=$(cat "$TMP/headers" 2>/dev/null)
        [ "$i" -lt "$tries" ] && [ "$status" = 503 ] && [ "$(js .error)" = recovering ] || break
        sleep 0.1
    done
    code=$status
}
req() { call "$1" "$2" "$3" "${4:-}" 127.0.0.1 yes; }
js() { printf '%s' "$body" | jq -r "$1" 2>/dev/null; }

iso() { date -u -d "@$(( $(date +%s) + $1 ))" +%Y-%m-%dT%H:%M:%SZ; }
wait_until() {
    local t; t=$(date -u -d "$1" +%s)
    for _ in $(seq 1 300); do [ "$(date +%s)" -gt "$t" ] && return 0; sleep 0.1; done
    return 1
}
