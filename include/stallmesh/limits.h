/*  Every limit of stallmesh, in one place.

    Anything that arrives from outside (a peer, a phone, a file) is checked
    against these before it is decoded or stored.  Names carry units last.   */
#ifndef STALLMESH_LIMITS_H
#define STALLMESH_LIMITS_H

/* Log entries. */
#define SM_ENTRY_BYTES_MAX        8192u     /* encoded entry, without signature */
#define SM_MSGPACK_DEPTH_MAX      6u        /* nesting of arrays in any message */
#define SM_SKU_BYTES_MAX          64u       /* UTF-8 bytes of a sku */
#define SM_NAME_BYTES_MAX         128u      /* item, market and node names */
#define SM_REASON_BYTES_MAX       200u      /* adjust and return reasons */
#define SM_EXTID_BYTES_MAX        64u       /* a till's idempotency key */
#define SM_SALE_LINES_MAX         32u       /* lines of one sale or return */
#define SM_QTY_MAX                1000000u  /* units in one entry or line */
#define SM_PRICE_MAX              1000000000000LL /* minor units, 10^12 */
#define SM_SALE_TOTAL_MAX         ((1LL << 53) - 1) /* a sale's total fits a JSON number exactly */
#define SM_SEQ_MAX                ((1ULL << 53) - 1) /* fits a JSON number exactly */
#define SM_FUTURE_SKEW_MS         (24ULL * 3600 * 1000) /* entries further ahead are refused */
#define SM_HOLD_TTL_MS_MAX        (24ULL * 3600 * 1000)
#define SM_HOLD_LINES_MAX         8u        /* lines of one hold (a reservation) */
#define SM_HOLD_CODE_BYTES_MAX    8u        /* a hold's pickup code in the log */
#define SM_HOLD_TAG_BYTES         8u        /* a hold's hashed device or address */
#define SM_DRAW_HEADS_MAX         64u       /* log heads a raffle draw names (nodes that took entries) */
#define SM_DROP_PICKUP_MIN_MAX    1440u     /* a drop's pickup window, minutes (a hold's longest) */

/* Runs and batches. */
#define SM_RUN_ENTRIES_MAX        4096u     /* entries in one ingested run */
#define SM_MEMBERS_MAX            1024u     /* origins known to one market */
#define SM_ENDPOINTS_MAX          8u        /* endpoints in a join token */
#define SM_ENDPOINT_BYTES_MAX     200u
#define SM_TOKEN_BYTES_MAX        4096u     /* join token text */

/* Store. */
#define SM_MAP_BYTES_DEFAULT      (2ULL << 30)  /* LMDB map size: 2 GiB, sparse */
#define SM_STORE_READERS_MAX      126u

/* The node's HTTP and websocket server (defaults; the config may lower). */
#define SM_HTTP_BODY_BYTES_MAX    65536u    /* request body; more is 413 */
#define SM_HTTP_HEADERS_MAX       64u       /* header lines per request */
#define SM_HTTP_URI_BYTES_MAX     2048u
#define SM_JSON_DEPTH_MAX         8u        /* nesting of a request's JSON */
#define SM_HTTP_CLIENTS_PER_ADDR_MAX 256u   /* open connections from one address */
#define SM_HTTP_CLIENTS_MAX       20000u    /* open connections in all */
#define SM_HTTP_REQUESTS_PER_ADDR_MAX 64u   /* connections from one address still sending a request */
#define SM_HTTP_HEADER_POOL       4096u     /* requests parsed at once (lws header tables) */
#define SM_HTTP_HEADERS_TIMEOUT_S 10u       /* a request's headers must be in by then */
#define SM_HTTP_BODY_TIMEOUT_S    20u       /* ... and its body by then, after the headers */
#define SM_WS_MESSAGE_BYTES_MAX   4096u     /* a message a phone may send */
#define SM_WS_QUEUE_BYTES_MAX     (1u << 20) /* unsent bytes per client; more drops it */
#define SM_HOLDS_PER_MIN_MAX      10u       /* holds one client address may make a minute */
#define SM_HOLD_TTL_S_DEFAULT     600u      /* a shopper's hold: 10 minutes */
#define SM_HOLD_RATE_CLIENTS_MAX  1024u     /* client addresses whose hold rate is tracked */
#define SM_HOLD_OWNERS_MAX        4096u     /* recent holds their maker may cancel without the token */
#define SM_HOLD_CODE_CHARS        6u        /* a pickup code as the phone shows it */
#define SM_HOLD_DEVICE_BYTES_MAX  64u       /* a phone's device id (POST /api/holds "device") */
#define SM_HOLD_MAX_UNITS_DEFAULT 5u        /* [holds] max_units: units in one reservation */
#define SM_HOLD_MAX_PER_SKU_DEFAULT 2u      /* [holds] max_per_sku: units of one sku in one */
#define SM_HOLD_PER_DEVICE_DEFAULT 10u      /* [holds] per_device: units one device holds at once */
#define SM_HOLD_PER_ADDRESS_DEFAULT 10u     /* [holds] per_address: units one address holds at once */
#define SM_HOLD_LIMIT_MAX         1000u     /* the largest value any [holds] limit accepts */
#define SM_HOLDS_OPEN_SCAN_MAX    100000u   /* open holds read to check codes and limits */
#define SM_SALES_PAGE_MAX         1000u     /* sales in one GET /api/sales answer */
#define SM_CORE_BATCH_MAX         256u      /* writes grouped into one commit */
#define SM_CORE_QUEUE_MAX         4096u     /* writes waiting for the core */

/* The node's log (src/logger.h). */
#define SM_LOG_THROTTLE_MS        10000u    /* one line per kind of repeated warning */
#define SM_LOG_THROTTLE_KEYS_MAX  256u      /* kinds of throttled warnings tracked */
#define SM_LOG_THROTTLE_KEY_BYTES 96u       /* of a kind's name; longer names are cut */
/* The organiser's reports (GET /api/report, /api/export/...). */
#define SM_REPORT_RANGE_DAYS_MAX  4000u     /* a report's range: over ten years */
#define SM_REPORT_HOURLY_DAYS_MAX 92u       /* by=hour: a quarter's hours at most */

/* The node's configuration file. */
#define SM_CONFIG_LINES_MAX       10000u    /* lines of one config file */
/* The CLI's requests to its node's JSON API. */
#define SM_CLI_URL_BYTES_MAX      512u      /* the node's base address, http://HOST:PORT */
#define SM_CLI_RESPONSE_BYTES_MAX (16u << 20) /* an answer; more is refused */
#define SM_CLI_CONNECT_TIMEOUT_MS 3000u
#define SM_CLI_REQUEST_TIMEOUT_MS 15000u    /* the whole request, connect included */
#define SM_CLI_DOWNLOAD_STALL_S   30u       /* an export that sends nothing this long is cut */

/* The mesh (proto/mesh.md). */
#define SM_WIRE_BYTES_MAX         (8u << 20) /* one message; larger is refused before decoding */
#define SM_WIRE_RUN_MAX           1024u     /* entries in one ENTRIES message */
#define SM_WIRE_RUN_BYTES_SOFT    (1u << 20) /* a sender stops filling ENTRIES past this */
#define SM_WIRE_PEERS_MAX         64u       /* endpoints in one PEERS message */
#define SM_PEERS_MAX              64u       /* peers a node keeps */
#define SM_WANTS_IN_FLIGHT_MAX    8u        /* unanswered WANTs per peer (flow control) */
#define SM_MESH_QUEUE_BYTES_MAX   (16u << 20) /* unsent bytes to one peer; more waits */
#define SM_HEADS_INTERVAL_MS      5000u     /* anti-entropy: HEADS to every peer */
#define SM_UNITS_WAIT_MS          500u      /* a sale waits this long for units from peers */
#define SM_OWN_CHECK_MS           3000u     /* at start, appends wait this long for a peer's HEADS */
#define SM_OWN_STALL_MS           10000u    /* ... and this long for own entries a peer claims */
#define SM_WANT_TIMEOUT_MS        10000u    /* an unanswered WANT is given up and asked again */
#define SM_OWN_WANT_HEDGE_MS      2000u     /* fetching its own log back, a node asks another peer too
                                                 after this long unanswered, and gives the WANT up after
                                                 twice this (well inside SM_OWN_STALL_MS) */
#define SM_UNITS_ASKS_MAX         256u      /* units asks open at once */
#define SM_UNITS_ASK_TTL_MS       60000u    /* an ask not closed by its caller is forgotten */
#define SM_UNITS_HOPS_MAX         3u        /* hops a units ask travels (1 = direct peers only) */
#define SM_UNITS_HOP_WAIT_MS      120u      /* a forwarder waits this long per hop still below it */
#define SM_UNITS_SEEN_MAX         1024u     /* asks a node remembers having served (one give each) */
#define SM_HOLD_FWD_WAIT_MS       1000u     /* a hold forwarded to another stall waits this long for its answer */
#define SM_HOLD_FWDS_MAX          64u       /* holds forwarded to other stalls and not yet answered */
#define SM_HOLD_ASKS_PER_MIN      600u      /* holds one peer may ask this node for a minute (a flood guard) */
#define SM_HOLD_ASKS_PER_SHOPPER_MIN 10u    /* forwarded holds of one shopper a minute (as per_min) */
#define SM_HOLD_ASK_SHOPPERS_MAX  1024u     /* shoppers whose forwarded holds are counted */
#define SM_HOLD_ASK_ANSWERS_MAX   256u      /* forwarded holds a node remembers answering (a redelivery gets the same answer) */
#define SM_UNITS_PER_MIN_DEFAULT  600u      /* units one member may get from a stall by asking, a minute ([mesh] units_per_min) */
#define SM_PEERS_RESEND_MS        30000u    /* PEERS again to every peer (a PEERS may be lost) */
#define SM_FORK_EVIDENCE_MAX      64u       /* origins whose fork evidence the mesh engine passes on */
#define SM_FORK_RESEND_MS         60000u    /* fork evidence sent again to every peer (a FORK may be lost) */

/* The LAN discovery beacon (--discover; proto/mesh.md section 10). */
#define SM_BEACON_BYTES_MAX       (142u + SM_ENDPOINT_BYTES_MAX) /* one datagram; larger is refused */
#define SM_DISCOVER_PORT_DEFAULT  7401u     /* UDP port beacons go to */
#define SM_DISCOVER_INTERVAL_MS   5000u     /* a node sends its beacon this often */
#define SM_DISCOVER_READS_MAX     32u       /* datagrams read per poll round; more wait */
#define SM_DISCOVER_VERIFIES_PER_S 64u      /* beacon signatures checked a second; more are dropped */
#define SM_DISCOVER_NODES_MAX     SM_MEMBERS_MAX /* nodes whose last beacon time is kept */

/* HTTPS, paired devices and failed authentications (src/auth.c). */
#define SM_DEVICES_MAX            256u      /* paired devices a node keeps */
#define SM_PAIR_CODES_MAX         32u       /* pairing codes open at once */
#define SM_PAIR_TTL_S_DEFAULT     600u      /* a pairing code lasts this long ([http] pair_ttl_s) */
#define SM_DEVICE_NAME_BYTES_MAX  64u       /* a device's name */
#define SM_AUTH_FAILS_MAX         20u       /* failed authentications an address may make a window; then 429 */
#define SM_AUTH_FAIL_WINDOW_MS    600000u   /* ... the window: 10 minutes */
#define SM_AUTH_ADDRS_MAX         1024u     /* addresses whose failures are counted (least recent evicted) */

#endif
