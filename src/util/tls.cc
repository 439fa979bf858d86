#include "cppetcd/util/tls.h"

// File access: operator files (certificates, keys, CAs, CRLs) are read and
// the auto-TLS and CRL directories written through util::Env. Outside it:
// OpenSSL's own *_file loaders in NewServerSslContext (certificate chain,
// key, CA; they read the files ValidateTlsInfo read through the Env just
// before; moving them means loading from memory: left for later), the stat of
// IdentityOf (a change hint for reloading; contents are read through the
// Env) and the chmod of an existing CRL directory (the Env has no chmod).

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::util {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;

// Go's wording of a failed open: "open <path>: no such file or directory".
BioPtr MemBio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// The first certificate of a PEM file's contents.
absl::StatusOr<X509Ptr> ParseCertificate(const std::string& path, const std::string& pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tls: failed to find any PEM data in certificate input"));
  }
  return cert;
}

absl::StatusOr<PkeyPtr> ParseKey(const std::string& path, const std::string& pem) {
  BioPtr bio = MemBio(pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tls: failed to find any PEM data in key input"));
  }
  return key;
}

// Number of certificates in a PEM bundle.
int CountCertificates(const std::string& pem) {
  BioPtr bio = MemBio(pem);
  int n = 0;
  while (X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) ++n;
  ERR_clear_error();
  return n;
}

// "host:port", "[v6]:port" or "host" -> host.
std::string HostOf(const std::string& host_port) {
  if (!host_port.empty() && host_port.front() == '[') {
    size_t close = host_port.find(']');
    return close == std::string::npos ? host_port : host_port.substr(1, close - 1);
  }
  size_t colon = host_port.find(':');
  if (colon != std::string::npos && host_port.find(':', colon + 1) == std::string::npos) {
    return host_port.substr(0, colon);
  }
  return host_port;  // a bare name or a bare IPv6 address
}

bool IsIp(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

absl::Status MakeDirs(Env* env, const std::string& dir) {
  if (absl::Status st = env->CreateDirAll(dir); !st.ok()) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create cert directory ", dir, ": ", st.message()));
  }
  return absl::OkStatus();
}

// Temporary file, sync, rename, directory sync (util::WriteFileAtomically);
// mode 0600.
absl::Status WriteFile(Env* env, const std::string& path, const std::string& data) {
  return WriteFileAtomically(env, path, data);
}

// ALPN: "http/1.1" if offered (curl, browsers: the HTTP gateway), else "h2"
// (gRPC clients offer only h2); no overlap: continue without ALPN.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  const unsigned char* h2 = nullptr;
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    const unsigned char* proto = in + i + 1;
    if (len == 8 && std::memcmp(proto, "http/1.1", 8) == 0) {
      *out = proto;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    if (len == 2 && std::memcmp(proto, "h2", 2) == 0) h2 = proto;
    i += 1 + len;
  }
  if (h2 != nullptr) {
    *out = h2;
    *outlen = 2;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// The CRLs of a --client-crl-file / --peer-crl-file: one or more PEM
// "X509 CRL" blocks, or one DER CRL (Go's x509.ParseCRL takes both).
// InvalidArgument naming the file when it cannot be read or holds no CRL,
// and, with `refuse_stale`, when a CRL's nextUpdate has passed (for gRPC's
// peer CRL directory, whose verification then fails every handshake with a
// certificate of that issuer: better said at start-up).
absl::StatusOr<std::vector<CrlPtr>> LoadCrls(const std::string& path, bool refuse_stale,
                                             Env* env = nullptr) {
  absl::StatusOr<std::string> data = ReadPemFile(path, env);
  if (!data.ok()) return data.status();
  std::vector<CrlPtr> crls;
  {
    BioPtr bio = MemBio(*data);
    while (CrlPtr crl{PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)}) {
      crls.push_back(std::move(crl));
    }
  }
  if (crls.empty()) {
    BioPtr bio = MemBio(*data);
    if (CrlPtr crl{d2i_X509_CRL_bio(bio.get(), nullptr)}) crls.push_back(std::move(crl));
  }
  ERR_clear_error();
  if (crls.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no certificate revocation list (PEM or DER) found"));
  }
  for (const CrlPtr& crl : crls) {
    if (!refuse_stale) break;
    const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
    if (next != nullptr && X509_cmp_current_time(next) < 0) {
      BioPtr out(BIO_new(BIO_s_mem()));
      X509_NAME_print_ex(out.get(), X509_CRL_get_issuer(crl.get()), 0, XN_FLAG_ONELINE);
      BIO_puts(out.get(), " (next update ");
      ASN1_TIME_print(out.get(), next);
      BIO_puts(out.get(), ")");
      char* text = nullptr;
      const long n = BIO_get_mem_data(out.get(), &text);
      return absl::InvalidArgumentError(absl::StrCat(path, ": the revocation list has expired: ",
                                                     std::string(text, static_cast<size_t>(n))));
    }
  }
  return crls;
}

// Certificate verification with a CRL file, as etcd's client port, which
// only looks for the certificate's serial in the file's list: a certificate
// whose issuer has no CRL in the file is accepted (OpenSSL's CRL_CHECK would
// refuse it), and a CRL past its nextUpdate (or before its lastUpdate) still
// revokes what it lists (OpenSSL would fail every handshake of its issuer;
// etcd's e2e fixture revoke.crl is such a CRL). Every other failure stands.
int VerifyWithCrl(int ok, X509_STORE_CTX* ctx) {
  if (ok) return ok;
  switch (X509_STORE_CTX_get_error(ctx)) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
      X509_STORE_CTX_set_error(ctx, X509_V_OK);
      return 1;
    default:
      return ok;
  }
}

// Go's crypto/tls names of the TLS 1.0-1.2 suites (tls.CipherSuites() and
// tls.InsecureCipherSuites(), plus the two short CHACHA20 aliases etcd's
// tlsutil accepts) and OpenSSL's names for the same suites.
struct CipherName {
  const char* go;
  const char* openssl;
};
constexpr CipherName kTls12Ciphers[] = {
    {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
};
// Go's TLS 1.3 suites: accepted, and (as in Go) not configurable.
constexpr const char* kTls13Ciphers[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                         "TLS_CHACHA20_POLY1305_SHA256"};

}  // namespace

std::string OpenSslErrors() {
  std::vector<std::string> parts;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    parts.emplace_back(buf);
  }
  return absl::StrJoin(parts, "; ");
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path, Env* env) {
  if (env == nullptr) env = Env::Default();
  absl::StatusOr<std::string> out = ReadFileBounded(env, path, kMaxPemFileBytes);
  if (out.ok()) return out;
  const absl::Status& st = out.status();
  if (absl::IsFailedPrecondition(st) && absl::StrContains(st.message(), "file is larger than")) {
    return absl::InvalidArgumentError(
        absl::StrCat("read ", path, ": file is larger than ", kMaxPemFileBytes >> 20, " MiB"));
  }
  // Go's words: "open <path>: no such file or directory" (lower case).
  std::string msg(st.message());
  const size_t colon = msg.rfind(": ");
  if (colon != std::string::npos && colon + 2 < msg.size()) {
    msg[colon + 2] = static_cast<char>(std::tolower(static_cast<unsigned char>(msg[colon + 2])));
  }
  return absl::InvalidArgumentError(msg);
}

absl::Status ValidateTlsInfo(const TlsInfo& info) {
  if (info.cert_file.empty() != info.key_file.empty()) {
    // etcd's pkg/transport wording.
    return absl::InvalidArgumentError(absl::StrCat("KeyFile and CertFile must both be present[key: ",
                                                   info.key_file, ", cert: ", info.cert_file, "]"));
  }
  if (!info.allowed_cn.empty() && !info.allowed_hostname.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllowedCN and AllowedHostname are mutually exclusive (cn=\"", info.allowed_cn,
                     "\", hostname=\"", info.allowed_hostname, "\")"));
  }
  if (!info.cert_file.empty()) {
    absl::StatusOr<std::string> cert_pem = ReadPemFile(info.cert_file);
    if (!cert_pem.ok()) return cert_pem.status();
    absl::StatusOr<std::string> key_pem = ReadPemFile(info.key_file);
    if (!key_pem.ok()) return key_pem.status();
    absl::StatusOr<X509Ptr> cert = ParseCertificate(info.cert_file, *cert_pem);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<PkeyPtr> key = ParseKey(info.key_file, *key_pem);
    if (!key.ok()) return key.status();
    if (X509_check_private_key(cert->get(), key->get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat("tls: private key does not match public key (cert ",
                                                     info.cert_file, ", key ", info.key_file, ")"));
    }
  }
  if (!info.trusted_ca_file.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadPemFile(info.trusted_ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    if (CountCertificates(*ca_pem) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(info.trusted_ca_file, ": no PEM certificate found in the trusted CA file"));
    }
  }
  if (!info.crl_file.empty()) {
    absl::StatusOr<std::vector<CrlPtr>> crls = LoadCrls(info.crl_file, /*refuse_stale=*/false);
    if (!crls.ok()) return crls.status();
  }
  return absl::OkStatus();
}

absl::Status WriteCrlDirectory(const std::string& crl_file, const std::string& dir, Env* env) {
  if (env == nullptr) env = Env::Default();
  absl::StatusOr<std::vector<CrlPtr>> crls = LoadCrls(crl_file, /*refuse_stale=*/true, env);
  if (!crls.ok()) return crls.status();
  if (absl::Status st = MakeDirs(env, dir); !st.ok()) return st;
  // A directory made by an older version may be wider; the Env makes new
  // ones 0700 and has no chmod (a permission change is no data to lose).
  ::chmod(dir.c_str(), 0700);
  // Only what this call writes: drop the files of an earlier start.
  absl::StatusOr<std::vector<std::string>> names = env->GetChildren(dir);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    if (name.size() > 3 && name.find(".r") != std::string::npos) {
      env->RemoveFile(JoinPath(dir, name)).IgnoreError();
    }
  }
  std::map<unsigned long, int> next_suffix;  // issuer hash -> next .r<n>
  for (const CrlPtr& crl : *crls) {
    const unsigned long hash = X509_NAME_hash_ex(X509_CRL_get_issuer(crl.get()), nullptr, nullptr,
                                                 nullptr);
    char name[32];
    std::snprintf(name, sizeof(name), "%08lx.r%d", hash, next_suffix[hash]++);
    BioPtr out(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509_CRL(out.get(), crl.get());
    char* data = nullptr;
    const long n = BIO_get_mem_data(out.get(), &data);
    const std::string pem(data, static_cast<size_t>(n));
    if (absl::Status st = WriteFile(env, JoinPath(dir, name), pem); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> OpenSslCipherList(const std::vector<std::string>& go_names) {
  std::vector<std::string> list;
  bool any_tls13 = false;
  for (const std::string& name : go_names) {
    if (std::find(std::begin(kTls13Ciphers), std::end(kTls13Ciphers), name) !=
        std::end(kTls13Ciphers)) {
      any_tls13 = true;
      continue;
    }
    const CipherName* found = nullptr;
    for (const CipherName& c : kTls12Ciphers) {
      if (name == c.go) found = &c;
    }
    if (found == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected TLS cipher suite \"", name, "\""));
    }
    // Known to Go, but is it in this OpenSSL (RC4 and 3DES are not)?
    SslCtxPtr probe(SSL_CTX_new(TLS_server_method()));
    const bool available =
        probe != nullptr && SSL_CTX_set_cipher_list(probe.get(), found->openssl) == 1;
    ERR_clear_error();
    if (!available) {
      return absl::InvalidArgumentError(absl::StrCat("TLS cipher suite \"", name, "\" (OpenSSL ",
                                                     found->openssl,
                                                     ") is not available in this OpenSSL"));
    }
    if (std::find(list.begin(), list.end(), found->openssl) == list.end()) {
      list.emplace_back(found->openssl);
    }
  }
  if (list.empty() && any_tls13) {
    return absl::InvalidArgumentError(
        "--cipher-suites lists only TLS 1.3 suites, which are not configurable: TLS 1.2 "
        "connections would have no cipher suite");
  }
  return absl::StrJoin(list, ":");
}

absl::StatusOr<PemCertificate> IssueCertificate(const CertificateRequest& request) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (key == nullptr) return absl::InternalError("cannot generate ECDSA key: " + OpenSslErrors());
  X509Ptr issuer_cert;
  PkeyPtr issuer_key;
  if (!request.issuer_cert_pem.empty()) {
    absl::StatusOr<X509Ptr> c = ParseCertificate("issuer", request.issuer_cert_pem);
    if (!c.ok()) return c.status();
    absl::StatusOr<PkeyPtr> k = ParseKey("issuer", request.issuer_key_pem);
    if (!k.ok()) return k.status();
    issuer_cert = std::move(*c);
    issuer_key = std::move(*k);
  }
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  // A random positive 128-bit serial number.
  unsigned char serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof(serial_bytes));
  serial_bytes[0] &= 0x7f;
  BIGNUM* serial = BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr);
  BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get()));
  BN_free(serial);
  using std::chrono::system_clock;
  // Real wall time: peers check a certificate's validity against theirs.
  const system_clock::time_point now = system_clock::now();
  const system_clock::time_point not_before =
      request.not_before == system_clock::time_point{} ? now : request.not_before;
  const system_clock::time_point not_after = request.not_after == system_clock::time_point{}
                                                 ? now + std::chrono::hours(365 * 24)
                                                 : request.not_after;
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), system_clock::to_time_t(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), system_clock::to_time_t(not_after));
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!request.organization.empty()) {
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(request.organization.c_str()),
                               -1, -1, 0);
  }
  if (!request.common_name.empty()) {
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(request.common_name.c_str()),
                               -1, -1, 0);
  }
  X509* signer = issuer_cert ? issuer_cert.get() : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));

  std::vector<std::string> sans;
  for (const std::string& h : request.hosts) {
    const std::string host = HostOf(h);
    if (host.empty()) continue;
    sans.push_back(absl::StrCat(IsIp(host) ? "IP:" : "DNS:", host));
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, signer, cert.get(), nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> exts;
  if (request.is_ca) {
    exts = {{NID_basic_constraints, "critical,CA:TRUE"},
            {NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"},
            {NID_subject_key_identifier, "hash"}};
  } else {
    exts = {{NID_basic_constraints, "critical,CA:FALSE"},
            {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
            {NID_ext_key_usage, "serverAuth,clientAuth"}};
  }
  if (!sans.empty()) exts.emplace_back(NID_subject_alt_name, absl::StrJoin(sans, ","));
  for (const auto& [nid, value] : exts) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (ext == nullptr) {
      return absl::InternalError(absl::StrCat("cannot generate x509 certificate (", value,
                                              "): ", OpenSslErrors()));
    }
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert.get(), issuer_key ? issuer_key.get() : key.get(), EVP_sha256()) == 0) {
    return absl::InternalError("cannot generate x509 certificate: " + OpenSslErrors());
  }
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(cert_bio.get(), cert.get());
  PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  PemCertificate out;
  char* data = nullptr;
  long n = BIO_get_mem_data(cert_bio.get(), &data);
  out.cert_pem.assign(data, static_cast<size_t>(n));
  n = BIO_get_mem_data(key_bio.get(), &data);
  out.key_pem.assign(data, static_cast<size_t>(n));
  return out;
}

absl::StatusOr<TlsInfo> SelfCert(const std::string& dir, const std::vector<std::string>& hosts,
                                 std::chrono::hours validity, Env* env) {
  if (env == nullptr) env = Env::Default();
  if (absl::Status st = MakeDirs(env, dir); !st.ok()) return st;
  TlsInfo info;
  info.cert_file = dir + "/cert.pem";
  info.key_file = dir + "/key.pem";
  info.self_signed = true;
  if (env->FileExists(info.cert_file) && env->FileExists(info.key_file)) return info;
  CertificateRequest req;
  req.organization = "etcd";
  req.hosts = hosts;
  req.not_before = std::chrono::system_clock::now();  // real: see IssueCertificate
  req.not_after = req.not_before + validity;
  absl::StatusOr<PemCertificate> pem = IssueCertificate(req);
  if (!pem.ok()) return pem.status();
  if (absl::Status st = WriteFile(env, info.key_file, pem->key_pem); !st.ok()) return st;
  if (absl::Status st = WriteFile(env, info.cert_file, pem->cert_pem); !st.ok()) return st;
  return info;
}

void SslCtxDeleter::operator()(ssl_ctx_st* ctx) const { SSL_CTX_free(ctx); }

absl::StatusOr<SslCtxPtr> NewServerSslContext(const TlsInfo& info) {
  if (info.Empty()) {
    return absl::InvalidArgumentError("TLS key/cert (--cert-file, --key-file) must be provided");
  }
  if (absl::Status st = ValidateTlsInfo(info); !st.ok()) return st;
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new: " + OpenSslErrors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
  if (!info.cipher_list.empty() &&
      SSL_CTX_set_cipher_list(ctx.get(), info.cipher_list.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot use the cipher suites ", info.cipher_list, ": ", OpenSslErrors()));
  }
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), info.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(info.cert_file, ": cannot load certificate: ", OpenSslErrors()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), info.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(info.key_file, ": cannot load private key: ", OpenSslErrors()));
  }
  SSL_CTX_set_alpn_select_cb(ctx.get(), SelectAlpn, nullptr);
  static const unsigned char kSessionContext[] = "cppetcd";
  SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof(kSessionContext) - 1);
  if (info.client_cert_auth) {
    if (!info.trusted_ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx.get(), info.trusted_ca_file.c_str(), nullptr) != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(info.trusted_ca_file, ": cannot load CA: ", OpenSslErrors()));
      }
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(info.trusted_ca_file.c_str())) {
        SSL_CTX_set_client_CA_list(ctx.get(), names);
      }
    } else {
      // As Go with no ClientCAs: the system's roots.
      SSL_CTX_set_default_verify_paths(ctx.get());
    }
    if (!info.crl_file.empty()) {
      absl::StatusOr<std::vector<CrlPtr>> crls = LoadCrls(info.crl_file, /*refuse_stale=*/false);
      if (!crls.ok()) return crls.status();
      X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
      for (const CrlPtr& crl : *crls) X509_STORE_add_crl(store, crl.get());
      X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       info.crl_file.empty() ? nullptr : VerifyWithCrl);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  ERR_clear_error();
  return ctx;
}

namespace {

// What identifies a file's contents for reloading; all zero when missing.
struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};

FileIdentity IdentityOf(const std::string& path) {
  FileIdentity id;
  struct stat st{};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return id;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  id.size = st.st_size;
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

std::vector<FileIdentity> IdentitiesOf(const TlsInfo& info) {
  return {IdentityOf(info.cert_file), IdentityOf(info.key_file),
          IdentityOf(info.trusted_ca_file), IdentityOf(info.crl_file)};
}

absl::StatusOr<std::shared_ptr<ssl_ctx_st>> BuildContext(
    const TlsInfo& info, ReloadingServerSslContext::Customize customize) {
  absl::StatusOr<SslCtxPtr> ctx = NewServerSslContext(info);
  if (!ctx.ok()) return ctx.status();
  if (customize != nullptr) customize(ctx->get());
  return std::shared_ptr<ssl_ctx_st>(ctx->release(), SslCtxDeleter());
}

}  // namespace

struct ReloadingServerSslContext::State {
  TlsInfo info;
  Customize customize = nullptr;
  std::chrono::milliseconds check_interval{1000};
  Clock* clock = SystemClock::Get();
  Mutex mu;
  std::shared_ptr<ssl_ctx_st> ctx ABSL_GUARDED_BY(mu);
  std::vector<FileIdentity> files ABSL_GUARDED_BY(mu);
  std::chrono::steady_clock::time_point next_check ABSL_GUARDED_BY(mu);
  std::string last_error ABSL_GUARDED_BY(mu);
  uint64_t reloads ABSL_GUARDED_BY(mu) = 0;
  uint64_t failed ABSL_GUARDED_BY(mu) = 0;
};

ReloadingServerSslContext::ReloadingServerSslContext(std::unique_ptr<State> state)
    : state_(std::move(state)) {}
ReloadingServerSslContext::~ReloadingServerSslContext() = default;

absl::StatusOr<std::unique_ptr<ReloadingServerSslContext>> ReloadingServerSslContext::Create(
    TlsInfo info, Customize customize, std::chrono::milliseconds check_interval, Clock* clock) {
  auto state = std::make_unique<State>();
  if (clock != nullptr) state->clock = clock;
  std::vector<FileIdentity> files = IdentitiesOf(info);
  absl::StatusOr<std::shared_ptr<ssl_ctx_st>> ctx = BuildContext(info, customize);
  if (!ctx.ok()) return ctx.status();
  {
    MutexLock l(&state->mu);  // not shared yet; for the analysis
    state->files = std::move(files);
    state->ctx = *std::move(ctx);
    state->next_check = state->clock->Now() + check_interval;
  }
  state->info = std::move(info);
  state->customize = customize;
  state->check_interval = check_interval;
  return std::unique_ptr<ReloadingServerSslContext>(
      new ReloadingServerSslContext(std::move(state)));
}

std::shared_ptr<ssl_ctx_st> ReloadingServerSslContext::Get() {
  State& s = *state_;
  MutexLock l(&s.mu);
  const auto now = s.clock->Now();
  if (now < s.next_check) return s.ctx;
  s.next_check = now + s.check_interval;
  std::vector<FileIdentity> files = IdentitiesOf(s.info);
  if (files == s.files) return s.ctx;
  absl::StatusOr<std::shared_ptr<ssl_ctx_st>> ctx = BuildContext(s.info, s.customize);
  if (!ctx.ok()) {
    ++s.failed;
    // Retried at the next check; said once per distinct error.
    if (ctx.status().ToString() != s.last_error) {
      s.last_error = ctx.status().ToString();
      GetLogger("embed").Error("cannot reload the TLS certificate files; keeping the previous ones",
                               {{"cert-file", s.info.cert_file},
                                {"key-file", s.info.key_file},
                                {"error", s.last_error}});
    }
    return s.ctx;
  }
  s.ctx = *std::move(ctx);
  s.files = std::move(files);
  s.last_error.clear();
  ++s.reloads;
  GetLogger("embed").Info("reloaded the TLS certificate files",
                          {{"cert-file", s.info.cert_file}, {"key-file", s.info.key_file},
                           {"trusted-ca-file", s.info.trusted_ca_file},
                           {"crl-file", s.info.crl_file}});
  return s.ctx;
}

uint64_t ReloadingServerSslContext::reloads() const {
  MutexLock l(&state_->mu);
  return state_->reloads;
}

uint64_t ReloadingServerSslContext::failed_reloads() const {
  MutexLock l(&state_->mu);
  return state_->failed;
}

namespace {

// etcd 3.4 pkg/transport TLSInfo: a certificate that fails the allowed CN
// or host name check fails the handshake with this error, on either side.
constexpr char kIdentityFailed[] = "client certificate authentication failed";

std::optional<std::string> CommonNameOf(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  const int idx = subject == nullptr ? -1 : X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx < 0) return std::nullopt;
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return std::nullopt;
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return cn;
}

// The allowed_cn check (the leaf's Subject CN, exactly) or the
// allowed_hostname check (Go's x509 VerifyHostname since Go 1.17: DNS or IP
// SANs only, wildcards in DNS names; the CN is never used).
absl::Status CheckIdentity(const TlsInfo& info, X509* cert) {
  if (!info.allowed_cn.empty()) {
    if (CommonNameOf(cert) != info.allowed_cn) return absl::PermissionDeniedError(kIdentityFailed);
    return absl::OkStatus();
  }
  const std::string& h = info.allowed_hostname;
  const int ok = IsIp(h) ? X509_check_ip_asc(cert, h.c_str(), 0)
                         : X509_check_host(cert, h.c_str(), h.size(),
                                           X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, nullptr);
  if (ok != 1) return absl::PermissionDeniedError(kIdentityFailed);
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> VerifiedPeerCommonName(ssl_st* ssl) {
  if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return std::nullopt;
  X509Ptr cert(SSL_get1_peer_certificate(ssl));
  if (cert == nullptr) return std::nullopt;
  return CommonNameOf(cert.get());
}

absl::Status CheckPeerIdentity(const TlsInfo& info, ssl_st* ssl) {
  if (info.allowed_cn.empty() && info.allowed_hostname.empty()) return absl::OkStatus();
  X509Ptr cert(SSL_get1_peer_certificate(ssl));
  if (cert == nullptr) return absl::PermissionDeniedError(kIdentityFailed);
  return CheckIdentity(info, cert.get());
}

absl::Status CheckCertificateIdentity(const TlsInfo& info, std::string_view cert_pem) {
  if (info.allowed_cn.empty() && info.allowed_hostname.empty()) return absl::OkStatus();
  const std::string pem(cert_pem);
  BioPtr bio = MemBio(pem);
  X509Ptr cert(bio == nullptr ? nullptr : PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) return absl::PermissionDeniedError(kIdentityFailed);
  return CheckIdentity(info, cert.get());
}

std::optional<std::string> CertificateCommonName(std::string_view cert_pem) {
  const std::string pem(cert_pem);
  BioPtr bio = MemBio(pem);
  X509Ptr cert(bio == nullptr ? nullptr : PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) return std::nullopt;
  return CommonNameOf(cert.get());
}

}  // namespace cppetcd::util
