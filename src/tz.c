/*  Time zones from TZif files (RFC 8536).  See tz.h.

    Layout read: the version 1 header and block are skipped (32-bit times);
    the version 2+ header gives the counts of the 64-bit block:

        "TZif" version(1) reserved(15) isutcnt isstdcnt leapcnt timecnt
        typecnt charcnt (6 x be32)
        timecnt x be64 transition times, timecnt x u8 type indices,
        typecnt x (be32 utoff, u8 isdst, u8 desigidx), charcnt bytes,
        leapcnt x (be64, be32), isstdcnt bytes, isutcnt bytes,
        "\n" POSIX-TZ-string "\n"

    Every count is checked against the bytes that remain before it is used.
    Before the first transition the first type applies; after the last, the
    footer's rule (e.g. "GMT0BST,M3.5.0/1,M10.5.0"), else the last type.     */
#include "tz.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stallmesh/error.h"

#define SM__TZ_FILE_BYTES_MAX  (256u * 1024u)   /* the largest zone is ~4 KiB */
#define SM__TZ_TRANS_MAX       4096u
#define SM__TZ_TYPES_MAX       256u

typedef struct {
    int32_t std_off, dst_off;  /* seconds east of UTC */
    bool has_dst;
    /* rules: kind 'M' (month, week, wday), 'J' (1..365, no Feb 29), 'D' (0..365) */
    char kind[2];
    int month[2], week[2], wday[2], day[2];
    int32_t at_s[2];           /* local time of day of the change, seconds */
} s_rule;

struct sm_tz {
    char name[SM_TZ_NAME_BYTES_MAX + 1];
    uint32_t timecnt, typecnt;
    int64_t *trans;            /* timecnt transition instants */
    uint8_t *idx;              /* their types */
    int32_t *utoff;            /* typecnt offsets */
    bool has_rule;
    s_rule rule;               /* the footer, for instants after the last transition */
};

/* ---- calendar --------------------------------------------------------- */

int64_t
sm_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned) (y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t) doe - 719468;
}

void
sm_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned) (z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t) yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static int64_t
s_floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static bool
s_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* ---- the POSIX TZ string ----------------------------------------------- */

static const char *
s_posix_name(const char *p)
{
    if (*p == '<') {
        while (*p && *p != '>')
            p++;
        return *p == '>' ? p + 1 : NULL;
    }
    const char *start = p;
    while (isalpha((unsigned char) *p))
        p++;
    return p - start >= 3 ? p : NULL;
}

/*  [+-]hh[:mm[:ss]] into seconds; NULL on a malformed time.                */
static const char *
s_posix_time(const char *p, int32_t *out)
{
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char) *p))
        return NULL;
    int32_t parts[3] = { 0, 0, 0 };
    for (int i = 0; i < 3; i++) {
        int v = 0, n = 0;
        while (isdigit((unsigned char) *p) && n < 3) {
            v = v * 10 + (*p++ - '0');
            n++;
        }
        if (n == 0)
            return NULL;
        parts[i] = v;
        if (*p != ':' || i == 2)
            break;
        p++;
    }
    if (parts[0] > 167 || parts[1] > 59 || parts[2] > 59)
        return NULL;
    *out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
    return p;
}

static const char *
s_posix_date(const char *p, s_rule *r, int i)
{
    char *end;
    if (*p == 'M') {
        r->kind[i] = 'M';
        r->month[i] = (int) strtol(p + 1, &end, 10);
        if (*end != '.')
            return NULL;
        r->week[i] = (int) strtol(end + 1, &end, 10);
        if (*end != '.')
            return NULL;
        r->wday[i] = (int) strtol(end + 1, &end, 10);
        if (r->month[i] < 1 || r->month[i] > 12 || r->week[i] < 1 || r->week[i] > 5
            || r->wday[i] < 0 || r->wday[i] > 6)
            return NULL;
    } else if (*p == 'J') {
        r->kind[i] = 'J';
        r->day[i] = (int) strtol(p + 1, &end, 10);
        if (end == p + 1 || r->day[i] < 1 || r->day[i] > 365)
            return NULL;
    } else if (isdigit((unsigned char) *p)) {
        r->kind[i] = 'D';
        r->day[i] = (int) strtol(p, &end, 10);
        if (r->day[i] < 0 || r->day[i] > 365)
            return NULL;
    } else {
        return NULL;
    }
    p = end;
    r->at_s[i] = 7200;
    if (*p == '/') {
        int32_t t;
        if (!(p = s_posix_time(p + 1, &t)))
            return NULL;
        r->at_s[i] = t;
    }
    return p;
}

/*  Parse "STD off[DST[off][,start[/time],end[/time]]]".  A string with DST
    but without rules (rare) falls back to the last transition's type.      */
static bool
s_posix_parse(const char *s, s_rule *r)
{
    memset(r, 0, sizeof *r);
    const char *p = s_posix_name(s);
    int32_t t;
    if (!p || !(p = s_posix_time(p, &t)))
        return false;
    r->std_off = -t;
    if (*p == 0)
        return true;
    if (!(p = s_posix_name(p)))
        return false;
    r->dst_off = r->std_off + 3600;
    if (*p && *p != ',') {
        if (!(p = s_posix_time(p, &t)))
            return false;
        r->dst_off = -t;
    }
    if (*p != ',')
        return false;
    if (!(p = s_posix_date(p + 1, r, 0)) || *p != ',')
        return false;
    if (!(p = s_posix_date(p + 1, r, 1)) || *p)
        return false;
    r->has_dst = true;
    return true;
}

/*  Local seconds (since the epoch, at 00:00 of the day) of rule i's date in
    year y.                                                                  */
static int64_t
s_rule_day(const s_rule *r, int i, int64_t y)
{
    int64_t jan1 = sm_days_from_civil(y, 1, 1);
    switch (r->kind[i]) {
    case 'J': {
        int64_t day = r->day[i] - 1;         /* Feb 29 never counted */
        if (s_leap(y) && day >= 59)
            day++;
        return jan1 + day;
    }
    case 'D':
        return jan1 + r->day[i];
    default: {
        int64_t first = sm_days_from_civil(y, (unsigned) r->month[i], 1);
        int64_t wd = ((first + 4) % 7 + 7) % 7;   /* 1970-01-01 was a Thursday */
        int64_t day = first + ((r->wday[i] - wd) % 7 + 7) % 7 + 7 * (r->week[i] - 1);
        static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        int len = mdays[r->month[i] - 1] + (r->month[i] == 2 && s_leap(y));
        while (day >= first + len)
            day -= 7;                        /* week 5: the last such day */
        return day;
    }
    }
}

static int32_t
s_rule_offset(const s_rule *r, int64_t utc_s)
{
    if (!r->has_dst)
        return r->std_off;
    int64_t days;
    int64_t y;
    unsigned m, d;
    days = s_floor_div(utc_s + r->std_off, 86400);
    sm_civil_from_days(days, &y, &m, &d);
    /* Starts in standard time, ends in daylight time (POSIX). */
    int64_t start = s_rule_day(r, 0, y) * 86400 + r->at_s[0] - r->std_off;
    int64_t end = s_rule_day(r, 1, y) * 86400 + r->at_s[1] - r->dst_off;
    bool dst = start < end ? (utc_s >= start && utc_s < end)
                           : !(utc_s >= end && utc_s < start);
    return dst ? r->dst_off : r->std_off;
}

/* ---- TZif ---------------------------------------------------------------- */

static uint32_t
s_be32(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static int64_t
s_be64(const uint8_t *p)
{
    return (int64_t) ((uint64_t) s_be32(p) << 32 | s_be32(p + 4));
}

int
sm_tz_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > SM_TZ_NAME_BYTES_MAX || name[0] == '/' || strstr(name, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) name[i];
        if (!isalnum(c) && c != '_' && c != '-' && c != '+' && c != '/')
            return 0;
    }
    return 1;
}

void
sm_tz_destroy(sm_tz **self_p)
{
    assert(self_p);
    sm_tz *self = *self_p;
    if (!self)
        return;
    free(self->trans);
    free(self->idx);
    free(self->utoff);
    free(self);
    *self_p = NULL;
}

sm_tz *
sm_tz_parse(const char *name, const uint8_t *data, size_t len, int *err)
{
    assert(name && (data || len == 0) && err);
    sm_tz *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    snprintf(self->name, sizeof self->name, "%s", name);
    *err = SM_ETZ;
    if (len < 44 || memcmp(data, "TZif", 4) != 0 || data[4] < '2')
        goto fail;
    /* Skip the version 1 block. */
    uint32_t c1[6];
    for (int i = 0; i < 6; i++)
        c1[i] = s_be32(data + 20 + 4 * i);
    uint64_t v1 = (uint64_t) c1[3] * 5 + (uint64_t) c1[4] * 6 + c1[5]
                + (uint64_t) c1[2] * 8 + c1[1] + c1[0];
    if (v1 > len - 44 || len - 44 - v1 < 44)
        goto fail;
    const uint8_t *p = data + 44 + v1, *end = data + len;
    if (memcmp(p, "TZif", 4) != 0)
        goto fail;
    uint32_t isut = s_be32(p + 20), isstd = s_be32(p + 24), leap = s_be32(p + 28);
    uint32_t timecnt = s_be32(p + 32), typecnt = s_be32(p + 36), charcnt = s_be32(p + 40);
    p += 44;
    if (timecnt > SM__TZ_TRANS_MAX || typecnt == 0 || typecnt > SM__TZ_TYPES_MAX)
        goto fail;
    uint64_t need = (uint64_t) timecnt * 9 + (uint64_t) typecnt * 6 + charcnt
                  + (uint64_t) leap * 12 + isstd + isut;
    if (need > (uint64_t) (end - p))
        goto fail;
    self->timecnt = timecnt;
    self->typecnt = typecnt;
    self->trans = malloc((timecnt ? timecnt : 1) * sizeof *self->trans);
    self->idx = malloc(timecnt ? timecnt : 1);
    self->utoff = malloc(typecnt * sizeof *self->utoff);
    if (!self->trans || !self->idx || !self->utoff) {
        *err = SM_ENOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < timecnt; i++) {
        self->trans[i] = s_be64(p + 8 * i);
        if (i && self->trans[i] <= self->trans[i - 1])
            goto fail;
    }
    p += 8 * (size_t) timecnt;
    for (uint32_t i = 0; i < timecnt; i++)
        if ((self->idx[i] = p[i]) >= typecnt)
            goto fail;
    p += timecnt;
    for (uint32_t i = 0; i < typecnt; i++) {
        int32_t off = (int32_t) s_be32(p + 6 * i);
        if (off <= -25 * 3600 || off >= 26 * 3600)
            goto fail;
        self->utoff[i] = off;
    }
    p += 6 * (size_t) typecnt + charcnt + (size_t) leap * 12 + isstd + isut;
    /* Footer: "\n" TZ "\n" (may be empty). */
    if (p < end && *p == '\n') {
        const uint8_t *nl = memchr(p + 1, '\n', (size_t) (end - p - 1));
        if (nl && nl > p + 1 && nl - p - 1 < 128) {
            char tzs[128];
            memcpy(tzs, p + 1, (size_t) (nl - p - 1));
            tzs[nl - p - 1] = 0;
            /* A rule we cannot read: the last transition's type goes on. */
            self->has_rule = s_posix_parse(tzs, &self->rule);
        }
    }
    *err = 0;
    return self;
fail:
    sm_tz_destroy(&self);
    return NULL;
}

sm_tz *
sm_tz_open(const char *name, int *err)
{
    assert(name && err);
    if (!sm_tz_name_ok(name)) {
        *err = SM_ETZ;
        return NULL;
    }
    const char *dir = getenv("TZDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0) {
            /* No tzdata installed: UTC needs no file. */
            sm_tz *self = calloc(1, sizeof *self);
            if (!self) {
                *err = SM_ENOMEM;
                return NULL;
            }
            snprintf(self->name, sizeof self->name, "%s", name);
            self->has_rule = true;
            return self;
        }
        *err = SM_ETZ;
        return NULL;
    }
    uint8_t *buf = malloc(SM__TZ_FILE_BYTES_MAX);
    if (!buf) {
        fclose(f);
        *err = SM_ENOMEM;
        return NULL;
    }
    size_t len = fread(buf, 1, SM__TZ_FILE_BYTES_MAX, f);
    fclose(f);
    sm_tz *self = sm_tz_parse(name, buf, len, err);
    free(buf);
    return self;
}

const char *
sm_tz_name(const sm_tz *self)
{
    assert(self);
    return self->name;
}

int32_t
sm_tz_offset(const sm_tz *self, int64_t utc_s)
{
    assert(self);
    if (self->timecnt == 0 || utc_s >= self->trans[self->timecnt - 1]) {
        if (self->has_rule)
            return s_rule_offset(&self->rule, utc_s);
        if (self->timecnt == 0)
            return self->utoff ? self->utoff[0] : 0;
        return self->utoff[self->idx[self->timecnt - 1]];
    }
    if (utc_s < self->trans[0])
        return self->utoff[0];
    /* The last transition at or before utc_s. */
    uint32_t lo = 0, hi = self->timecnt - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (self->trans[mid] <= utc_s)
            lo = mid;
        else
            hi = mid - 1;
    }
    return self->utoff[self->idx[lo]];
}

int64_t
sm_tz_local_to_utc(const sm_tz *self, int64_t local_s)
{
    assert(self);
    /* Offsets in force a day either side cover any single change. */
    int32_t before = sm_tz_offset(self, local_s - 86400 - 26 * 3600);
    int32_t after = sm_tz_offset(self, local_s + 86400 + 26 * 3600);
    int32_t cands[2] = { before, after };
    bool found = false;
    int64_t best = 0;
    for (int i = 0; i < 2; i++) {
        int64_t u = local_s - cands[i];
        if (sm_tz_offset(self, u) == cands[i] && (!found || u < best)) {
            best = u;
            found = true;
        }
    }
    /* Also the offset at the naive instant (a change within the day). */
    int32_t mid = sm_tz_offset(self, local_s - before);
    int64_t u = local_s - mid;
    if (sm_tz_offset(self, u) == mid && (!found || u < best)) {
        best = u;
        found = true;
    }
    if (found)
        return best;
    /* A skipped time: the first instant whose wall time is >= local_s. */
    int64_t lo = local_s - (before > after ? before : after) - 1;
    int64_t hi = local_s - (before < after ? before : after) + 1;
    while (lo + 1 < hi) {
        int64_t m = lo + (hi - lo) / 2;
        if (m + sm_tz_offset(self, m) >= local_s)
            hi = m;
        else
            lo = m;
    }
    return hi;
}

void
sm_tz_system(char *out, size_t cap)
{
    assert(out && cap > 0);
    const char *env = getenv("TZ");
    if (env && *env == ':')
        env++;
    if (env && sm_tz_name_ok(env)) {
        snprintf(out, cap, "%s", env);
        return;
    }
    FILE *f = fopen("/etc/timezone", "r");
    if (f) {
        char line[SM_TZ_NAME_BYTES_MAX + 2];
        if (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n \t")] = 0;
            if (sm_tz_name_ok(line)) {
                fclose(f);
                snprintf(out, cap, "%s", line);
                return;
            }
        }
        fclose(f);
    }
    char link[512];
    ssize_t n = readlink("/etc/localtime", link, sizeof link - 1);
    if (n > 0) {
        link[n] = 0;
        const char *z = strstr(link, "zoneinfo/");
        if (z && sm_tz_name_ok(z + 9)) {
            snprintf(out, cap, "%s", z + 9);
            return;
        }
    }
    snprintf(out, cap, "UTC");
}
