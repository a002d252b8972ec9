#!/bin/bash
# Integration test of the order "durable, then answered", against a real
# `stallmesh run` on loopback traced by strace:
#
#   bash tests/integration/test_durable_order.sh build/stallmesh   (from the repo root)
#
# The node commits with LMDB's MDB_NOMETASYNC: a commit writes and syncs its
# data pages, then writes its meta page without syncing it, so it is durable
# only at the next fdatasync of data.mdb (src/policy.c, above s_commit).  A
# `201` must not leave the node before that.  The node runs under
#
#   strace -f -tt -y -s 65536 -e trace=openat,pwrite64,pwritev,write,writev,
#          sendto,sendmsg,fdatasync,fsync
#
# (-y names each descriptor's file, so data.mdb and the sockets are told
# apart); it takes 50 sales one at a time (curl), then 200 with 8 in flight
# (httpload), each with its own external id.  From the trace, for each `201`
# a socket was sent for a sale (found by the external id its body echoes):
#   - its commit: the first commit whose data-page writes to data.mdb
#     (between the meta-page write before and its own) hold that external
#     id; a meta-page write is a pwrite64 to data.mdb inside its first two
#     pages (LMDB writes the meta from its mapsize field on: offset 32 or
#     page size + 32);
#   - an fdatasync (or fsync) of data.mdb that succeeded, began after that
#     meta-page write returned and returned before the answer was written
#     (or the meta write went through a descriptor opened O_DSYNC/O_SYNC).
# The trace's lines are in the order strace saw the calls enter and return,
# which keeps every cause before its effect across the node's threads.
# One sale at a time, that commit is the last before the answer, so this is
# also "a sync began after the last meta-page write before the answer",
# checked literally for those 50.  With several in flight an answer may
# leave after the next commit's meta write (the sync thread made its own
# commit durable while the core committed the next batch: overlapping
# commits), so the batch is checked against each sale's own commit.
# Each check prints "ok - ..." or "not ok - ..."; the last line is "N passed,
# M failed"; exit non-zero if M > 0.  Every wait is bounded; only the node
# this script started is stopped, by its PID.  Needs curl, jq, ss, python3,
# strace and mdb_stat (lmdb-utils).

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
TOOLS=$(dirname "$BIN")/tools
. "$(dirname "$0")/lib.sh"     # checks, free_port, until_true

pass=0
fail=0

for tool in curl jq ss python3 strace mdb_stat; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed (make deps)"; finish; }
done
[ -x "$BIN" ] && [ -x "$TOOLS/httpload" ] || { nok "$BIN and $TOOLS/httpload are built (make all tools)"; finish; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-durable.XXXXXX") || exit 1
DIR=$TMP/node
NODE_PID=
STRACE_PID=
cleanup() {
    # The node first (strace leaves a tracee it did not start running when
    # it is itself stopped), then strace, which exits with its tracee.
    [ -n "$NODE_PID" ] && kill -KILL "$NODE_PID" 2>/dev/null
    if [ -n "$STRACE_PID" ]; then
        for _ in $(seq 1 50); do kill -0 "$STRACE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$STRACE_PID" 2>/dev/null
        wait "$STRACE_PID" 2>/dev/null
    fi
    [ -n "${KEEP_TMP:-}" ] && { echo "# kept $TMP"; return; }
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE

"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
PAGE=$(mdb_stat -e "$DIR/store" | sed -n 's/^ *Page size: *//p')
[ -n "$PAGE" ] || PAGE=$(getconf PAGESIZE)
TOKEN=$(cat "$DIR/api-token")

# The node under strace; `sh -c 'echo $$; exec'` gives the node's own PID.
# Each fdatasync is held 20 ms before it starts, as on a slow disk: an
# answer that did not wait for its sync would leave well before it (without
# the delay the node's own sync often wins that race, and a missing wait
# would show in only some answers).
SYNC_DELAY_US=20000
PORT=
for _ in 1 2 3 4 5; do
    PORT=$(free_port) || continue
    strace -f -tt -y -s 65536 -o "$TMP/trace" \
        -e trace=openat,pwrite64,pwritev,write,writev,sendto,sendmsg,fdatasync,fsync \
        -e inject=fdatasync,fsync:delay_enter=$SYNC_DELAY_US \
        sh -c 'echo $$ >"$0/node.pid"; exec "$@"' "$TMP" \
        "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none \
        >"$TMP/node.out" 2>>"$TMP/node.err" &
    STRACE_PID=$!
    until_true 5 test -s "$TMP/node.pid" && NODE_PID=$(cat "$TMP/node.pid")
    until_true 15 curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/readyz" && break
    [ -n "$NODE_PID" ] && kill -KILL "$NODE_PID" 2>/dev/null
    wait "$STRACE_PID" 2>/dev/null
    NODE_PID= STRACE_PID= PORT=
    rm -f "$TMP/node.pid"
done
[ -n "$PORT" ] || { nok "the node starts under strace" "$(tail -n 5 "$TMP/node.err")"; finish; }
URL=http://127.0.0.1:$PORT

post() {
    curl -s --max-time 20 -o "$TMP/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "$2" "$URL$1"
}
# A sale is 503 while the node checks its own log with its peers (none
# here: briefly after its start); retry that, nothing else.
post_retry() {
    local c
    for _ in $(seq 1 50); do
        c=$(post "$@")
        [ "$c" = 503 ] || break
        sleep 0.1
    done
    echo "$c"
}
[ "$(post_retry /api/items '{"sku":"mug","name":"Mug","price":1200}')" = 201 ] \
    && [ "$(post /api/stock/add '{"sku":"mug","qty":1000}')" = 201 ] \
    || { nok "catalog" "$(cat "$TMP/body")"; finish; }

# Unique external ids: a tag from this run, the number, then "z", so no id
# is a prefix of another (s1z is not in s10z).
TAG=dur$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
codes=""
for i in $(seq 1 50); do
    c=$(post /api/sales "{\"lines\":[{\"sku\":\"mug\",\"qty\":1}],\"source\":\"in_person\",\"payment\":\"cash\",\"external_id\":\"${TAG}s${i}z\"}")
    [ "$c" = 201 ] || codes="$codes $i:$c"
done
check "50 sales one at a time: each 201" '[ -z "$codes" ]' "$codes $(cat "$TMP/body")"
"$TOOLS/httpload" "$URL/api/sales" --method POST --bearer-file "$DIR/api-token" --expect 201 \
    --requests 200 --parallel 8 --header 'Content-Type: application/json' \
    --body "{\"lines\":[{\"sku\":\"mug\",\"qty\":1}],\"source\":\"in_person\",\"payment\":\"card\",\"external_id\":\"${TAG}b%nz\"}" \
    >"$TMP/load.out" 2>&1
lrc=$?
check "200 sales with 8 in flight (httpload): each 201" '[ $lrc = 0 ]' "$(cat "$TMP/load.out")"

# Stop the node (SIGTERM: a clean stop) so strace writes all of the trace.
kill -TERM "$NODE_PID" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$STRACE_PID" 2>/dev/null || break; sleep 0.1; done
wait "$STRACE_PID" 2>/dev/null
NODE_PID= STRACE_PID=

python3 - "$TMP/trace" "$PAGE" "$TAG" >"$TMP/order.out" 2>&1 <<'PY'
import codecs, re, sys

path, page, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
line_re = re.compile(r'^(\d+) +[\d:.]+ (.*)$')
call_re = re.compile(r'^(\w+)\((.*)$')
resumed_re = re.compile(r'^<\.\.\. (\w+) resumed>(.*)$')
fd_re = re.compile(r'^(\d+)<([^>]*)>')
str_re = re.compile(r'"((?:[^"\\]|\\.)*)"')
ret_re = re.compile(r'\) += (-?\d+)')

def data_of(args):
    """The bytes of every string argument, strace's escapes undone."""
    out = b''
    for s in str_re.findall(args):
        out += codecs.escape_decode(s.encode('latin-1'))[0]
    return out

# ops: dicts with name, fd (number<path>), path, args, enter, leave, ret;
# enter/leave are line numbers: the order strace saw them.
ops, pending = [], {}
with open(path, encoding='latin-1') as f:
    for n, line in enumerate(f):
        m = line_re.match(line.rstrip('\n'))
        if not m:
            continue
        pid, rest = m.group(1), m.group(2)
        r = resumed_re.match(rest)
        if r:
            op = pending.pop(pid, None)
            if op:
                op['leave'] = n
                op['args'] += r.group(2)
                rm = ret_re.search(r.group(2))
                op['ret'] = int(rm.group(1)) if rm else None
            continue
        c = call_re.match(rest)
        if not c:
            continue
        name, args = c.group(1), c.group(2)
        fm = fd_re.match(args)
        op = {'name': name, 'fd': fm.group(0) if fm else '', 'path': fm.group(2) if fm else '',
              'args': args, 'enter': n, 'leave': None, 'ret': None}
        if name == 'openat':
            om = re.search(r'\) = (\d+)<([^>]*)>', args)
            op['fd'] = om.group(0)[4:] if om else ''
            op['path'] = om.group(2) if om else ''
        if args.endswith(' <unfinished ...>'):
            op['args'] = args[:-len(' <unfinished ...>')]
            pending[pid] = op
        else:
            op['leave'] = n
            rm = ret_re.search(args)
            op['ret'] = int(rm.group(1)) if rm else None
        ops.append(op)

def is_store(op):
    return op['path'].endswith('/data.mdb')

sync_fds = set()      # data.mdb descriptors opened O_DSYNC or O_SYNC
for op in ops:
    if op['name'] == 'openat' and is_store(op) and re.search(r'O_D?SYNC', op['args']):
        sync_fds.add(op['fd'])

def offset_of(op):
    m = re.findall(r', (\d+)\) += -?\d+', op['args'])
    return int(m[-1]) if m else None

# Commits: each meta-page write ends one; the data writes since the one
# before are its own (one thread writes data.mdb: the core's).
commits, data = [], b''
syncs = []
for op in ops:
    if not is_store(op) or op['leave'] is None:
        continue
    if op['name'] in ('fdatasync', 'fsync'):
        if op['ret'] == 0:
            syncs.append(op)
    elif op['name'] == 'pwrite64' and offset_of(op) is not None and offset_of(op) < 2 * page:
        commits.append({'meta': op, 'data': data, 'dsync': op['fd'] in sync_fds})
        data = b''
    elif op['name'] in ('pwrite64', 'pwritev', 'write', 'writev'):
        data += data_of(op['args'])

def durable_by(commit, before):
    """A sync (or an O_DSYNC meta write) made `commit` durable before line `before`."""
    meta = commit['meta']
    if commit['dsync']:
        return meta['leave'] < before
    return any(s['enter'] > meta['leave'] and s['leave'] < before for s in syncs)

# Answers: a socket write starting "HTTP/1.1 201"; its body follows on the
# same socket (same descriptor and inode) before the next status line.
answers, open_answer = [], {}
for op in ops:
    if op['name'] not in ('write', 'writev', 'sendto', 'sendmsg') or not op['path'].startswith('socket:'):
        continue
    b = data_of(op['args'])
    if b.startswith(b'HTTP/'):
        open_answer.pop(op['fd'], None)
        if b.startswith(b'HTTP/1.1 201'):
            a = {'at': op['enter'], 'bytes': b}
            answers.append(a)
            open_answer[op['fd']] = a
    elif op['fd'] in open_answer:
        open_answer[op['fd']]['bytes'] += b

stats = {'s': [0, 0, 0, 0], 'b': [0, 0, 0, 0]}   # answers, durable, strict, later meta
bad = []
batched = {}
for a in answers:
    m = re.search(rb'"external_id":"(' + tag.encode() + rb'([sb])\d+z)"', a['bytes'])
    if not m:
        continue
    xid, kind = m.group(1), m.group(2).decode()
    st = stats[kind]
    st[0] += 1
    own = next((i for i, c in enumerate(commits) if xid in c['data']), None)
    if own is None or commits[own]['meta']['leave'] >= a['at']:
        bad.append('%s: no commit holding it was written before its answer (line %d)'
                   % (xid.decode(), a['at'] + 1))
        continue
    if kind == 'b':
        batched[own] = batched.get(own, 0) + 1
    last = max(i for i, c in enumerate(commits) if c['meta']['leave'] < a['at'])
    if last > own:
        st[3] += 1
    if durable_by(commits[own], a['at']):
        st[1] += 1
    else:
        bad.append('%s: answered at line %d, its commit\'s meta written at line %d, no sync between'
                   % (xid.decode(), a['at'] + 1, commits[own]['meta']['enter'] + 1))
    if durable_by(commits[last], a['at']):
        st[2] += 1

print('commits=%d syncs=%d' % (len(commits), len(syncs)))
for k in 'sb':
    print('%s answers=%d durable=%d strict=%d after_later_meta=%d'
          % ((k,) + tuple(stats[k])))
print('b commits=%d largest=%d' % (len(batched), max(batched.values(), default=0)))
# Syncs a commit while sales were queued: from the first to the last commit
# of the 200, the fdatasyncs of data.mdb that began, over those commits.
if batched:
    lo, hi = min(batched), max(batched)
    first, last_line = commits[lo]['meta']['leave'], commits[hi]['meta']['leave']
    n_sync = sum(1 for s in syncs if first < s['enter'] <= last_line)
    print('b syncs_per_commit_x100=%d' % (100 * n_sync // max(1, hi - lo)))
for k in 'sb':
    for line in [x for x in bad if x.startswith(tag + k)][:5]:
        print('bad ' + line)
PY
prc=$?
grep -v '^bad ' "$TMP/order.out" | sed 's/^/# /'
field() { sed -n "s/^$1 .*\\b$2=\\([0-9]*\\).*/\\1/p" "$TMP/order.out"; }
check "the trace parses (commits, syncs and answers found)" \
    '[ $prc = 0 ] && [ "$(sed -n "s/^commits=\([0-9]*\).*/\1/p" "$TMP/order.out")" -gt 0 ]' \
    "$(tail -n 5 "$TMP/order.out")"
check "the trace shows the 50 one-at-a-time sales answered 201, each with its external id" \
    '[ "$(field s answers)" = 50 ]'
check "each of the 50 was answered after an fdatasync of data.mdb that began after its commit's meta-page write" \
    '[ "$(field s durable)" = 50 ]' "$(grep "^bad ${TAG}s" "$TMP/order.out")"
check "each of the 50 after an fdatasync that began after the last meta-page write before the answer" \
    '[ "$(field s strict)" = 50 ]'
check "the trace shows the 200 sales with 8 in flight answered 201, each with its external id" \
    '[ "$(field b answers)" = 200 ]'
check "some of the 200 were committed together (a commit held several: group commit was exercised)" \
    '[ "$(sed -n "s/^b commits=[0-9]* largest=\([0-9]*\)/\1/p" "$TMP/order.out")" -ge 2 ]'
check "each of the 200 was answered after an fdatasync of data.mdb that began after its commit's meta-page write" \
    '[ "$(field b durable)" = 200 ]' "$(grep "^bad ${TAG}b" "$TMP/order.out")"
# While more is queued a commit's own fdatasync makes the one before it
# durable (src/core.c, s_sync_start): no second sync a commit beside it.
check "with sales queued, fewer than 1.8 fdatasyncs a commit (the next commit's sync covers the one before)" \
    '[ "$(sed -n "s/^b syncs_per_commit_x100=\([0-9]*\)/\1/p" "$TMP/order.out")" -lt 180 ]' \
    "$(grep '^b syncs_per_commit' "$TMP/order.out")"
finish
