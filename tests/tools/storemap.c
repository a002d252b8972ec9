/*  storemap: where each record of a node's store lies in its file, for the
    tamper sweep (tests/integration/test_damage.sh).

        storemap DATA_MDB

    Parses LMDB 0.9's file format itself (with reads only: no LMDB, no
    mapping; the format is described atop src/store.c): the newest meta
    page, the main database's records (one a named database), and every
    leaf of every named database.  Prints one line a record:

        DB KEY_OFFSET KEY_BYTES VALUE_OFFSET VALUE_BYTES VALUE_HEAD

    VALUE_HEAD: the value's first 16 bytes in hex (a log value begins with
    its entry's signature, so an entry is found by its signature).
    offsets in bytes from the start of the file (a value on overflow pages
    gives the offset of its bytes there).  Exits 0, or 1 if the file does not
    parse (it is meant for undamaged copies).

        storemap --used DATA_MDB

    Prints the bytes in use instead: up to the end of the newest meta's last
    page (the node keeps the file written with zeros a little further:
    store.c, room ahead).                                                    */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_HDR        16u
#define S_P_BRANCH   0x01u
#define S_P_LEAF     0x02u
#define S_F_BIGDATA  0x01u
#define S_F_SUBDATA  0x02u
#define S_DEPTH_MAX  32

static uint8_t *s_file;
static size_t s_size;
static uint32_t s_psize;

static uint16_t s_u16(size_t off) { uint16_t v; memcpy(&v, s_file + off, 2); return v; }
static uint32_t s_u32(size_t off) { uint32_t v; memcpy(&v, s_file + off, 4); return v; }
static uint64_t s_u64(size_t off) { uint64_t v; memcpy(&v, s_file + off, 8); return v; }

static int
s_walk(const char *db, uint64_t pgno, int depth, int main_db)
{
    if (depth > S_DEPTH_MAX || (pgno + 1) * s_psize > s_size)
        return -1;
    size_t page = (size_t) pgno * s_psize;
    uint16_t flags = s_u16(page + 10), lower = s_u16(page + 12);
    if (lower < S_HDR || lower > s_psize)
        return -1;
    unsigned n = (lower - S_HDR) / 2u;
    for (unsigned i = 0; i < n; i++) {
        size_t node = page + s_u16(page + S_HDR + 2 * i);
        if (node + 8 > page + s_psize)
            return -1;
        uint32_t lo = s_u16(node), hi = s_u16(node + 2);
        uint16_t nflags = s_u16(node + 4), ksize = s_u16(node + 6);
        size_t key = node + 8;
        if (flags & S_P_BRANCH) {
            uint64_t child = (uint64_t) lo | (uint64_t) hi << 16 | (uint64_t) nflags << 32;
            if (s_walk(db, child, depth + 1, main_db) != 0)
                return -1;
            continue;
        }
        if (!(flags & S_P_LEAF))
            return -1;
        size_t dsize = lo | hi << 16;
        size_t data = key + ksize;
        if (nflags & S_F_BIGDATA) {
            uint64_t ov = s_u64(data);
            data = (size_t) ov * s_psize + S_HDR;
        }
        if (data + dsize > s_size)
            return -1;
        if (main_db) {
            if (!(nflags & S_F_SUBDATA) || dsize != 48 || ksize == 0 || ksize > 64)
                continue;
            char name[65];
            memcpy(name, s_file + key, ksize);
            name[ksize] = 0;
            uint64_t root = s_u64(data + 40);
            if (root != UINT64_MAX && s_walk(name, root, 0, 0) != 0)
                return -1;
        } else {
            printf("%s %zu %u %zu %zu ", db, key, (unsigned) ksize, data, dsize);
            for (size_t j = 0; j < 16 && j < dsize; j++)
                printf("%02x", s_file[data + j]);
            printf("\n");
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    bool used = argc == 3 && strcmp(argv[1], "--used") == 0;
    if (argc != 2 && !used) {
        fprintf(stderr, "usage: storemap [--used] DATA_MDB\n");
        return 2;
    }
    const char *file = argv[argc - 1];
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (len < 8192 || !(s_file = malloc((size_t) len))
        || fread(s_file, 1, (size_t) len, f) != (size_t) len) {
        fprintf(stderr, "storemap: cannot read %s\n", file);
        return 1;
    }
    fclose(f);
    s_size = (size_t) len;
    s_psize = s_u32(S_HDR + 24);
    if (s_psize < 512 || s_psize > 65536 || 2u * s_psize > s_size) {
        fprintf(stderr, "storemap: bad page size\n");
        return 1;
    }
    /* meta: magic, version, address, mapsize, dbs[2] (48 bytes), last, txnid */
    size_t m0 = S_HDR, m1 = s_psize + S_HDR;
    size_t meta = s_u64(m1 + 24 + 96 + 8) > s_u64(m0 + 24 + 96 + 8) ? m1 : m0;
    if (used) {
        printf("%llu\n", (unsigned long long) ((s_u64(meta + 24 + 96) + 1) * s_psize));
        free(s_file);
        return 0;
    }
    uint64_t main_root = s_u64(meta + 24 + 48 + 40);
    if (main_root == UINT64_MAX)
        return 0;
    if (s_walk("main", main_root, 0, 1) != 0) {
        fprintf(stderr, "storemap: %s does not parse\n", file);
        return 1;
    }
    free(s_file);
    return 0;
}
