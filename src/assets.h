/*  The pages the node serves (www/), embedded in the binary at build time
    (build/gen/assets.c, generated from www/ by the Makefile), so a node
    needs no files beside it and a phone needs no external asset.            */
#ifndef SM_ASSETS_H
#define SM_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *path;          /* URL path: "/", "/till", "/favicon.svg" */
    const char *content_type;  /* with charset where it applies */
    const unsigned char *data;
    size_t len;
    const char *etag;          /* quoted: a hash of the content */
    const char *csp;           /* its Content-Security-Policy: a page's own
                                  inline script and style by hash */
} sm_asset;

/*  The asset served at `path` (borrowed, static), or NULL.                  */
const sm_asset *sm_asset_find(const char *path);

#endif
