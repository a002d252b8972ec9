/*  The node's TLS certificate: made on first use, or the operator's own.

    `run --https HOST:PORT` (or [http] tls) serves the pages and the API
    over TLS as well.  With no tls_cert / tls_key configured the node makes,
    once, a self-signed ECDSA P-256 certificate for its names and addresses
    (the host name, HOST.local, localhost, every address of its interfaces
    and the listen host) and keeps it in DIR/tls/ (cert.pem 0644, key.pem
    0600); later starts reuse it, so a device that pinned or accepted it
    keeps trusting the node.  A market with its own CA, or a mirror with a
    public certificate, gives both files instead.

    What a device checks is printed at start: the SHA-256 fingerprint of
    the certificate (DER), as browsers show it, and the SHA-256 of its
    public key (SubjectPublicKeyInfo, DER) in base64, the form
    `curl --pinnedpubkey sha256//...` and Chromium's
    --ignore-certificate-errors-spki-list take.

    This is the only module that includes OpenSSL's headers (libcrypto);
    libwebsockets does the TLS itself (web.c) with the files named here.    */
#ifndef SM_TLS_H
#define SM_TLS_H

#include <limits.h>
#include <stddef.h>

#define SM_TLS_DIR            "tls"
#define SM_TLS_CERT_FILE      "cert.pem"
#define SM_TLS_KEY_FILE       "key.pem"
#define SM_TLS_VALID_DAYS     825   /* the longest some phones accept */
#define SM_TLS_NAMES_MAX      32    /* names and addresses in the certificate */

typedef struct {
    char cert_path[PATH_MAX];
    char key_path[PATH_MAX];
    char fingerprint[96];      /* SHA-256 of the certificate: "AB:CD:..." */
    char spki_sha256[48];      /* base64 SHA-256 of the public key */
    int generated;             /* 1 if made by this call */
} sm_tls_cert;

/*  The certificate to serve.  With cert and key both non-NULL, those files
    (checked: readable, a certificate and its matching key).  Otherwise
    DIR/tls/cert.pem and key.pem, made first if missing for `names`
    (NULL-terminated list of extra DNS names or IP addresses, e.g. the
    listen host; may be NULL).  0, or SM_EIO / SM_EINVAL with the reason in
    err[0..errlen).                                                          */
int sm_tls_ensure(const char *dir, const char *cert, const char *key,
                  const char *const *names, sm_tls_cert *out,
                  char *err, size_t errlen);

/*  The first non-loopback IPv4 address of this machine's interfaces into
    out[cap] ("127.0.0.1" if none): the host of the pairing URL when the
    node listens on every address.                                           */
void sm_tls_lan_addr(char *out, size_t cap);

#endif
