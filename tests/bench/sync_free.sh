# Sourced by bench_node.sh and bench_mesh.sh (POSIX sh and bash alike).
#
# sync_free_dir STORE_DIR NAME: make and print a new directory NAME.XXXXXX on
# a tmpfs (BENCH_SYNC_FREE_DIR, default /dev/shm), where an fsync costs
# nothing, for a figure measured again without the disk's syncs.  Prints why
# not and fails if BENCH_SYNC_FREE=0, if STORE_DIR (where the figures on the
# disk were measured) is on a tmpfs already, or if there is no writable tmpfs.
sync_free_dir() {
    sf_base=${BENCH_SYNC_FREE_DIR:-/dev/shm}
    if [ "${BENCH_SYNC_FREE:-1}" = 0 ]; then
        echo "skipped (BENCH_SYNC_FREE=0)"
    elif [ "$(stat -f -c %T "$1")" = tmpfs ]; then
        echo "skipped: the stores are on a tmpfs already"
    elif [ "$(stat -f -c %T "$sf_base" 2>/dev/null)" != tmpfs ] || [ ! -w "$sf_base" ]; then
        echo "skipped: no writable tmpfs at $sf_base"
    else
        mktemp -d "$sf_base/$2.XXXXXX" && return 0
        echo "skipped: cannot make a directory in $sf_base"
    fi
    return 1
}
