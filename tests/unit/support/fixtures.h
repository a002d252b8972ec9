/*  Entry fixtures for tests and benchmarks: one valid entry of each kind,
    and a second, independent encoder of the entry layout (on mpw, from
    proto/log.md) to check sm_entry_encode against.  Not for test vectors:
    those are defined in test_vectors.c so that editing a fixture never
    changes the normative bytes.                                             */
#ifndef SM_TEST_FIXTURES_H
#define SM_TEST_FIXTURES_H

#include "stallmesh/entry.h"
#include "support/mpw.h"

/*  A valid entry of `kind` (seq 3, fixed keys and values), zero-filled first
    so that two fixtures compare equal with memcmp.                         */
void fx_entry(sm_kind kind, sm_entry *e);

/*  Write e in the entry layout with mpw (no checks).                       */
void fx_encode(const sm_entry *e, mpw *w);

#endif
