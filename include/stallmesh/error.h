/*  stallmesh error codes.

    Every fallible function of the library returns 0 on success or one of
    the negative SM_E* codes below; constructors return NULL and, where they
    take an `int *err`, store the code there.  sm_strerror() gives a sentence
    fit to show a user.  Codes are stable: they appear in logs, in the JSON
    API's error bodies (by name, see sm_errname) and in tests.                */
#ifndef STALLMESH_ERROR_H
#define STALLMESH_ERROR_H

#define SM_ERRORS(X)                                                          \
    X(SM_EINVAL,      -1,  "invalid",        "invalid argument")              \
    X(SM_ENOMEM,      -2,  "no_memory",      "out of memory")                 \
    X(SM_EIO,         -3,  "io",             "input/output error")            \
    X(SM_ENOSPC,      -4,  "disk_full",      "the store is full (disk or map size); nothing was written") \
    X(SM_ENOTFOUND,   -5,  "not_found",      "not found")                     \
    X(SM_EEXIST,      -6,  "exists",         "already exists")                \
    X(SM_ETRUNC,      -10, "truncated",      "message ends before its declared length") \
    X(SM_ETOOBIG,     -11, "too_big",        "larger than the limit allows")  \
    X(SM_EMALFORMED,  -12, "malformed",      "not a well-formed message")     \
    X(SM_ENONCANON,   -13, "non_canonical",  "not in canonical encoding")     \
    X(SM_EVERSION,    -14, "bad_version",    "unsupported format version")    \
    X(SM_EKIND,       -15, "unknown_kind",   "unknown entry kind")            \
    X(SM_EBODY,       -16, "bad_body",       "entry body fails validation")   \
    X(SM_EQTY,        -17, "bad_quantity",   "quantity must be a positive whole number within the limit") \
    X(SM_EMONEY,      -18, "bad_money",      "money must be whole minor units (0 or more) with a 3-letter currency code") \
    X(SM_ESIG,        -20, "bad_signature",  "signature does not verify")     \
    X(SM_ELINK,       -21, "bad_link",       "entry does not link to the previous one") \
    X(SM_EGAP,        -22, "gap",            "entries are missing before this one") \
    X(SM_EMARKET,     -23, "foreign_market", "entry belongs to another market") \
    X(SM_ENOTMEMBER,  -24, "not_member",     "origin is not an admitted member of this market") \
    X(SM_EREVOKED,    -25, "revoked",        "origin was revoked from this market") \
    X(SM_EFORK,       -26, "fork",           "origin forked its log (equivocation); its later entries are quarantined") \
    X(SM_EFUTURE,     -27, "future",         "entry timestamp is too far in the future") \
    X(SM_EORIGIN,     -28, "bad_origin",     "run mixes origins or is not contiguous") \
    X(SM_ENOSTOCK,    -30, "insufficient_stock", "not enough units at this location") \
    X(SM_ENOSKU,      -31, "unknown_sku",    "no item with that sku")         \
    X(SM_ENOSALE,     -32, "unknown_sale",   "no such sale at this stall")    \
    X(SM_EOVERRETURN, -33, "over_return",    "more returned than was sold")   \
    X(SM_ENOHOLD,     -34, "unknown_hold",   "no such active hold")           \
    X(SM_EDROP,       -35, "drop_not_started", "the drop has not started yet") \
    X(SM_ENOTORG,     -36, "not_organiser",  "only the market's organiser may do this") \
    X(SM_ENOMARKET,   -37, "no_market",      "this node has no market yet: run 'stallmesh market create' or 'stallmesh join'") \
    X(SM_ENOIDENT,    -38, "no_identity",    "no identity in the data directory: run 'stallmesh init'") \
    X(SM_ETOKEN,      -39, "bad_token",      "join token is damaged, tampered with or for another node") \
    X(SM_ECORRUPT,    -40, "corrupt",        "stored data is corrupt; run 'stallmesh verify'") \
    X(SM_EBUSY,       -41, "busy",           "resource busy")                 \
    X(SM_ESTATE,      -42, "bad_state",      "operation not valid in the current state") \
    X(SM_ERECOVERING, -43, "recovering",     "this node is checking its own log with its peers (fetching it back if they hold more of it) and appends when it has; start it with --allow-fresh only if this store is the newest copy") \
    X(SM_EUNREACHABLE,-44, "stall_unreachable", "that stall is not reachable now: try again in a moment or hold at this stall") \
    X(SM_ETIMEOUT,    -45, "stall_timeout",  "the stall did not answer in time; the hold may exist there") \
    X(SM_ELOCKED,     -60, "store_locked",   "another stallmesh process is using this data directory: stop it first (its pid is in DIR/run.lock)") \
    X(SM_ETRUNCATED,  -61, "store_truncated", "the store file is shorter than its last page (truncated): run 'stallmesh repair' to rebuild it from its peers, or restore the data directory from a backup") \
    X(SM_EMETA,       -62, "store_meta_damaged", "the store's two meta pages disagree (its header is damaged): run 'stallmesh repair', or restore the data directory from a backup") \
    X(SM_ESTATEDIFF,  -63, "state_mismatch", "the stored state does not match the log: run 'stallmesh reindex' to rebuild it from the log") \
    X(SM_EDAMAGED,    -64, "store_damaged",  "the store's pages are damaged and cannot be read safely: run 'stallmesh repair', or restore the data directory from a backup") \
    X(SM_EDEGRADED,   -65, "degraded",       "a stored entry does not verify: this node serves that origin only up to the damage; run 'stallmesh repair' to fetch it back from peers") \
    X(SM_EWSUNMASKED, -80, "ws_unmasked",    "a websocket client sent an unmasked frame (RFC 6455 5.1)") \
    X(SM_EWSTOOBIG,   -81, "ws_too_large",   "a websocket message is longer than the node accepts") \
    X(SM_EWSUTF8,     -82, "ws_bad_utf8",    "a websocket text message is not valid UTF-8") \
    X(SM_ETZ,         -50, "bad_timezone",   "unknown time zone: give an IANA name such as Europe/London (install tzdata)") \
    X(SM_EORGONLY,    -51, "organiser_only", "a stall's node reports only its own stall: ask the organiser's node for the market") \
    X(SM_ERANGE,      -52, "bad_range",      "the report's range is empty or too long") \
    X(SM_EAUTH,       -100, "unauthorized",  "the bearer token is wrong, revoked or missing") \
    X(SM_EAUTHLIMIT,  -101, "too_many_failures", "too many failed authentications from this address: wait and retry") \
    X(SM_EPAIRCODE,   -102, "bad_pair_code", "the pairing code is unknown, used or expired: run 'stallmesh pair' for a new one") \
    X(SM_ESCOPE,      -103, "forbidden_scope", "this device's scope does not allow that") \
    X(SM_ENODEVICE,   -104, "unknown_device", "no paired device with that id") \
    X(SM_EDEVICES,    -105, "too_many_devices", "too many paired devices or open pairing codes: revoke some first") \
    X(SM_EHOLDLIMIT,  -90, "hold_limit",     "a reservation limit was reached: reserve fewer units, or wait until a reservation ends") \
    X(SM_EHOLDSOLD,   -91, "hold_sold",      "that reservation was already sold") \
    X(SM_EHOLDEXPIRED,-92, "hold_expired",   "that reservation has expired: its units are free again") \
    X(SM_EHOLDCODE,   -93, "hold_code_taken","that pickup code is in use by another open reservation here") \
    X(SM_EHOLDGONE,   -94, "hold_cancelled", "that reservation was cancelled") \
    X(SM_ESTORENEWER, -70, "store_too_new",  "the store was written by a newer stallmesh: run that version or a later one") \
    X(SM_EPASSPHRASE, -71, "bad_passphrase", "wrong passphrase, or the sealed identity is damaged") \
    X(SM_EREADONLY,   -110, "read_only",     "this node is a read-only mirror: write at a stall's own node") \
    X(SM_ENODROP,     -130, "unknown_drop",  "no drop with that id: 'stallmesh drop list' or GET /api/drops shows them") \
    X(SM_EDROPLIMIT,  -131, "drop_limit",    "this drop allows fewer units per shopper (device or address)") \
    X(SM_EDROPCLOSED, -132, "drop_closed",   "the raffle's entries are closed (or it was drawn)") \
    X(SM_EENTERED,    -133, "already_entered", "this device or address has already entered this raffle") \
    X(SM_EDRAWEARLY,  -134, "draw_too_early", "a raffle is drawn only after it closes") \
    X(SM_EDRAWN,      -135, "already_drawn", "this raffle was drawn already") \
    X(SM_EDROPBUSY,   -136, "drop_pending",  "a drop of this sku at this stall has not opened yet: wait for it, or drop another sku") \
    X(SM_EDRAWBAD,    -137, "draw_mismatch", "the draw does not match what its log gives") \
    X(SM_ENOTRAFFLE,  -138, "not_a_raffle",  "that drop is first-come, not a raffle")

enum {
#define SM__ERR_ENUM(sym, val, name, text) sym = val,
    SM_ERRORS(SM__ERR_ENUM)
#undef SM__ERR_ENUM
};

/*  A sentence describing `err` (0 gives "ok").  Returns a static string.     */
const char *sm_strerror(int err);

/*  A short snake_case code for `err`, as used in JSON error bodies.          */
const char *sm_errname(int err);

#endif
