/*  Time zones: IANA names read from the system's TZif files, thread-safe.

    The organiser's reports cut days and hours in a zone that is not the
    process's own and may differ per request, on the web thread while the
    core thread runs.  localtime_r under setenv("TZ") would race between
    threads and reload the zone every call, so this module reads the zone's
    TZif file (RFC 8536, version 2 or later: 64-bit transition times, and
    the POSIX TZ string of its footer for instants after the last
    transition) into an immutable sm_tz that any thread may use.

    Files come from $TZDIR or /usr/share/zoneinfo (Debian's `tzdata`).  A
    name is a relative path of letters, digits, '_', '-', '+' and '/'
    without "..", at most SM_TZ_NAME_BYTES_MAX bytes; "UTC" works without
    any file.  Leap-second ("right/") zones are read but their leap records
    ignored: reports count civil time.                                        */
#ifndef SM_TZ_H
#define SM_TZ_H

#include <stddef.h>
#include <stdint.h>

#define SM_TZ_NAME_BYTES_MAX 64u

typedef struct sm_tz sm_tz;

/*  Load zone `name`.  NULL with *err = SM_ETZ (unknown or malformed zone,
    bad name) or SM_ENOMEM.  Caller frees with sm_tz_destroy.               */
sm_tz *sm_tz_open(const char *name, int *err);
/*  The same from TZif bytes (tests; `name` is only recorded).              */
sm_tz *sm_tz_parse(const char *name, const uint8_t *data, size_t len, int *err);
/*  Free; safe with NULL and twice.                                          */
void sm_tz_destroy(sm_tz **self_p);

/*  The zone's name as opened (borrowed).                                   */
const char *sm_tz_name(const sm_tz *self);
/*  Seconds east of UTC in effect at the instant `utc_s` (unix seconds).   */
int32_t sm_tz_offset(const sm_tz *self, int64_t utc_s);
/*  The first instant (unix seconds) whose wall-clock time in the zone is at
    or after `local_s` (wall-clock seconds since 1970-01-01T00:00 local):
    for an ambiguous time (the hour repeated when clocks go back) the
    earlier one; for a time the zone skips (clocks go forward) the instant
    of the change.                                                           */
int64_t sm_tz_local_to_utc(const sm_tz *self, int64_t local_s);

/*  Whether `name` has the shape of a zone name (not whether it exists).    */
int sm_tz_name_ok(const char *name);
/*  The system's zone name into out[0..cap): $TZ if it names a zone, else
    /etc/timezone, else the target of /etc/localtime, else "UTC".            */
void sm_tz_system(char *out, size_t cap);

/*  Civil calendar helpers (proleptic Gregorian): days since 1970-01-01 of
    a date, and back.                                                        */
int64_t sm_days_from_civil(int64_t y, unsigned m, unsigned d);
void sm_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

#endif
