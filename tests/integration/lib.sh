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
# Each script keeps its own start, stop and req: they differ in what a node
# is started with and where its log goes.

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
