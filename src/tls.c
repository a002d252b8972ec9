/*  The node's TLS certificate (see tls.h): made once with OpenSSL's
    libcrypto, or read from the operator's files, and its fingerprints.

    The self-signed certificate: ECDSA P-256 key, SHA-256 signature, X.509
    v3 with subjectAltName (every name a device may use to reach the node),
    basicConstraints CA:FALSE, keyUsage digitalSignature, extendedKeyUsage
    serverAuth, a random 128-bit serial, valid from an hour ago for
    SM_TLS_VALID_DAYS.  Files are written beside their final name and
    renamed, the key created 0600, so a crash leaves no half key.            */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "stallmesh/error.h"

static void __attribute__((format(printf, 3, 4)))
s_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*  Append "DNS:name" or "IP:addr" to the list san[cap] unless present.     */
static void
s_san_add(char *san, size_t cap, size_t *count, const char *name)
{
    if (!name || !name[0] || *count >= SM_TLS_NAMES_MAX || strlen(name) > 253)
        return;
    for (const char *p = name; *p; p++)   /* nothing that could break the list */
        if (*p == ',' || *p == ' ' || (unsigned char) *p < 0x21 || *p == '\\')
            return;
    unsigned char buf[16];
    bool ip = inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
    if (!ip && (strcmp(name, "0.0.0.0") == 0 || strchr(name, ':')))
        return;
    char item[280];
    snprintf(item, sizeof item, "%s:%s", ip ? "IP" : "DNS", name);
    size_t n = strlen(item), used = strlen(san);
    for (const char *p = san; (p = strstr(p, item)) != NULL; p += n)
        if ((p == san || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
            return;
    if (used + n + 2 > cap)
        return;
    snprintf(san + used, cap - used, "%s%s", used ? "," : "", item);
    (*count)++;
}

/*  Every address of the interfaces that are up (link-local IPv6 left out:
    a URL cannot name one without its zone).                                 */
static void
s_san_addrs(char *san, size_t cap, size_t *count)
{
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || !(i->ifa_flags & IFF_UP))
            continue;
        char text[INET6_ADDRSTRLEN];
        if (i->ifa_addr->sa_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *) i->ifa_addr;
            inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *) i->ifa_addr;
            if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr))
                continue;
            inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
        } else {
            continue;
        }
        s_san_add(san, cap, count, text);
    }
    freeifaddrs(ifs);
}

void
sm_tls_lan_addr(char *out, size_t cap)
{
    snprintf(out, cap, "127.0.0.1");
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET
            || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, out,
                  (socklen_t) cap);
        break;
    }
    freeifaddrs(ifs);
}

static bool
s_add_ext(X509 *crt, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, crt, crt, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return false;
    bool ok = X509_add_ext(crt, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/*  Write a PEM file by a temporary name and rename it into place.          */
static int
s_write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *crt)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_X509(f, crt);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ok = 0;
    if (fclose(f) != 0)
        ok = 0;
    if (ok != 1 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int
s_generate(const sm_tls_cert *c, const char *const *names, char *err, size_t errlen)
{
    int rc = SM_EIO;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *crt = X509_new();
    BIGNUM *serial = BN_new();
    if (!key || !crt || !serial) {
        s_msg(err, errlen, "cannot make a TLS key (OpenSSL)");
        goto done;
    }
    char host[256] = "", local[300] = "";
    gethostname(host, sizeof host - 1);
    char san[4096] = "";
    size_t count = 0;
    s_san_add(san, sizeof san, &count, "localhost");
    s_san_add(san, sizeof san, &count, host);
    if (host[0] && !strchr(host, '.')) {
        snprintf(local, sizeof local, "%s.local", host);
        s_san_add(san, sizeof san, &count, local);
    }
    for (size_t i = 0; names && names[i]; i++)
        s_san_add(san, sizeof san, &count, names[i]);
    s_san_add(san, sizeof san, &count, "127.0.0.1");
    s_san_add(san, sizeof san, &count, "::1");
    s_san_addrs(san, sizeof san, &count);

    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1 || !BN_bin2bn(rnd, sizeof rnd, serial))
        goto fail;
    BN_set_bit(serial, 126);       /* positive, 127 bits */
    BN_clear_bit(serial, 127);
    char cn[64];
    snprintf(cn, sizeof cn, "stallmesh %.40s", host[0] ? host : "node");
    X509_NAME *name = X509_get_subject_name(crt);
    if (X509_set_version(crt, 2) != 1
        || !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(crt))
        || !X509_gmtime_adj(X509_getm_notBefore(crt), -3600)
        || !X509_gmtime_adj(X509_getm_notAfter(crt), (long) SM_TLS_VALID_DAYS * 86400)
        || X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                      (const unsigned char *) cn, -1, -1, 0) != 1
        || X509_set_issuer_name(crt, name) != 1
        || X509_set_pubkey(crt, key) != 1
        || !s_add_ext(crt, NID_basic_constraints, "critical,CA:FALSE")
        || !s_add_ext(crt, NID_key_usage, "critical,digitalSignature")
        || !s_add_ext(crt, NID_ext_key_usage, "serverAuth")
        || !s_add_ext(crt, NID_subject_key_identifier, "hash")
        || !s_add_ext(crt, NID_subject_alt_name, san)
        || X509_sign(crt, key, EVP_sha256()) <= 0)
        goto fail;
    if (s_write_pem(c->key_path, 0600, key, NULL) != 0
        || s_write_pem(c->cert_path, 0644, NULL, crt) != 0) {
        s_msg(err, errlen, "cannot write %s: %s", c->key_path, strerror(errno));
        goto done;
    }
    rc = 0;
    goto done;
fail:
    s_msg(err, errlen, "cannot make the TLS certificate (OpenSSL)");
done:
    BN_free(serial);
    X509_free(crt);
    EVP_PKEY_free(key);
    return rc;
}

/*  Read the pair back, check the key matches, and fill the fingerprints.  */
static int
s_check(sm_tls_cert *c, char *err, size_t errlen)
{
    int rc = SM_EINVAL;
    X509 *crt = NULL;
    EVP_PKEY *key = NULL;
    FILE *f = fopen(c->cert_path, "r");
    if (!f) {
        s_msg(err, errlen, "cannot read the TLS certificate %s: %s", c->cert_path,
              strerror(errno));
        return SM_EIO;
    }
    crt = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!crt) {
        s_msg(err, errlen, "%s is not a PEM certificate", c->cert_path);
        goto done;
    }
    if (!(f = fopen(c->key_path, "r"))) {
        s_msg(err, errlen, "cannot read the TLS key %s: %s", c->key_path, strerror(errno));
        rc = SM_EIO;
        goto done;
    }
    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!key || X509_check_private_key(crt, key) != 1) {
        s_msg(err, errlen, "%s is not the private key of %s", c->key_path, c->cert_path);
        goto done;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(crt, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
        s_msg(err, errlen, "cannot hash the certificate");
        goto done;
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(c->fingerprint + 3 * i, sizeof c->fingerprint - 3 * i, "%02X%s", md[i],
                 i + 1 < mdlen ? ":" : "");
    /* The whole SubjectPublicKeyInfo, as pinning takes it (not
       X509_pubkey_digest, which hashes the key bits alone). */
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(X509_get0_pubkey(crt), &der);
    if (n <= 0) {
        s_msg(err, errlen, "cannot read the certificate's public key");
        goto done;
    }
    EVP_Digest(der, (size_t) n, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    EVP_EncodeBlock((unsigned char *) c->spki_sha256, md, (int) mdlen);
    rc = 0;
done:
    EVP_PKEY_free(key);
    X509_free(crt);
    return rc;
}

int
sm_tls_ensure(const char *dir, const char *cert, const char *key,
              const char *const *names, sm_tls_cert *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if ((cert && cert[0]) || (key && key[0])) {
        if (!cert || !cert[0] || !key || !key[0]) {
            s_msg(err, errlen, "give both tls_cert and tls_key, or neither (the node "
                  "then makes its own in DIR/%s/)", SM_TLS_DIR);
            return SM_EINVAL;
        }
        snprintf(out->cert_path, sizeof out->cert_path, "%s", cert);
        snprintf(out->key_path, sizeof out->key_path, "%s", key);
        return s_check(out, err, errlen);
    }
    char tdir[PATH_MAX];
    if (snprintf(tdir, sizeof tdir, "%s/%s", dir, SM_TLS_DIR) >= (int) sizeof tdir
        || snprintf(out->cert_path, sizeof out->cert_path, "%s/%s", tdir,
                    SM_TLS_CERT_FILE) >= (int) sizeof out->cert_path
        || snprintf(out->key_path, sizeof out->key_path, "%s/%s", tdir,
                    SM_TLS_KEY_FILE) >= (int) sizeof out->key_path) {
        s_msg(err, errlen, "the data directory's path is too long");
        return SM_EINVAL;
    }
    if (mkdir(tdir, 0700) != 0 && errno != EEXIST) {
        s_msg(err, errlen, "cannot make %s: %s", tdir, strerror(errno));
        return SM_EIO;
    }
    bool have_cert = access(out->cert_path, F_OK) == 0;
    bool have_key = access(out->key_path, F_OK) == 0;
    if (have_cert != have_key) {
        s_msg(err, errlen, "%s has only one of %s and %s: remove it to make a new "
              "certificate", tdir, SM_TLS_CERT_FILE, SM_TLS_KEY_FILE);
        return SM_EINVAL;
    }
    if (!have_cert) {
        int rc = s_generate(out, names, err, errlen);
        if (rc != 0)
            return rc;
        out->generated = 1;
    }
    struct stat st;
    if (stat(out->key_path, &st) == 0 && (st.st_mode & 077)) {
        s_msg(err, errlen, "%s can be read by others: run 'chmod 600 %s'", out->key_path,
              out->key_path);
        return SM_EINVAL;
    }
    return s_check(out, err, errlen);
}
