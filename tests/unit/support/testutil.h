/*  Helpers shared by the unit tests: temporary data directories, fixed
    identities, body builders, a log copy, and a small deterministic PRNG.   */
#ifndef SM_TESTUTIL_H
#define SM_TESTUTIL_H

#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"

/* A new empty directory under $TMPDIR, or /tmp when it is unset (caller
   frees the string and removes it). */
char *tu_tempdir(void);
/* Remove a directory tree made by a test. */
void tu_rmrf(const char *dir);
/* An identity from a seed of 32 copies of `n`. */
void tu_identity(sm_identity *id, uint8_t n);
/* Open a ledger in dir/name with no fsync (tests only). */
sm_ledger *tu_open(const char *dir, const char *name);

sm_body tu_item(const char *sku, const char *name, int64_t price);
sm_body tu_add(const char *sku, uint32_t qty);
sm_body tu_sale(const char *sku, uint32_t qty, int64_t price, const char *extid);
sm_body tu_hold(const char *sku, uint32_t qty, uint64_t expires_ms);
sm_body tu_release(uint64_t hold_seq);
sm_body tu_return(uint64_t sale_seq, const char *sku, uint32_t qty);
sm_body tu_adjust(const char *sku, int64_t delta);
sm_body tu_move(const char *sku, uint32_t qty, const sm_id *to);
sm_body tu_drop(const char *sku, uint32_t qty, uint64_t starts_ms);
sm_body tu_admit(const sm_id *node, const char *name, int role);
sm_body tu_revoke(const sm_id *node, uint64_t upto);

/* A copied log entry. */
typedef struct {
    uint8_t *bytes;
    size_t len;
    uint8_t sig[SM_SIG_BYTES];
    uint64_t seq;
} tu_copy;
/* Copy origin's entries from..(from+max-1) out of a ledger; returns count. */
size_t tu_read(sm_ledger *l, const sm_id *origin, uint64_t from, size_t max,
               tu_copy *out);
void tu_free(tu_copy *c, size_t n);

/* Gossip stand-in: copy everything `from` has that `to` lacks, all origins,
   until nothing more is accepted.  Returns entries accepted.               */
size_t tu_sync(sm_ledger *from, sm_ledger *to, uint64_t now_ms);

/* Make a replica join `market` (stores market facts only). */
void tu_join(sm_ledger *l, sm_ledger *organiser);

/* Sign an entry by hand into bytes/sig (for crafted and hostile entries). */
size_t tu_sign(const sm_entry *e, const sm_identity *id, uint8_t *bytes,
               uint8_t sig[SM_SIG_BYTES]);

/* xorshift64*: deterministic randomness for property tests. */
uint64_t tu_rand(uint64_t *state);
uint64_t tu_below(uint64_t *state, uint64_t n);

/* Sum of units is never negative at any (sku, location): returns the count
   of negative records (0 when the invariant holds).                        */
int tu_negative_units(sm_ledger *l);

#endif
