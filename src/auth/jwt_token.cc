// JWT tokens (RFC 7519 over RFC 7515 compact JWS), signed and verified with
// OpenSSL, shaped as etcd 3.4's (golang-jwt) tokens: header
// {"alg":"<method>","typ":"JWT"}, claims {"exp":..,"revision":..,"username":..}.
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cmath>
#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cppetcd/auth/errors.h"
#include "cppetcd/util/tls.h"
#include "src/auth/token_impl.h"

namespace cppetcd::auth {
namespace {

enum class Family { kRsa, kRsaPss, kEcdsa, kHmac };

struct Method {
  std::string name;
  Family family;
  const EVP_MD* md;
  int ec_bytes;  // ECDSA: size of r and of s in the signature
};

std::optional<Method> LookupMethod(std::string_view name) {
  struct Row {
    const char* name;
    Family family;
    int bits;
  };
  static const Row rows[] = {
      {"RS256", Family::kRsa, 256},    {"RS384", Family::kRsa, 384},
      {"RS512", Family::kRsa, 512},    {"PS256", Family::kRsaPss, 256},
      {"PS384", Family::kRsaPss, 384}, {"PS512", Family::kRsaPss, 512},
      {"ES256", Family::kEcdsa, 256},  {"ES384", Family::kEcdsa, 384},
      {"ES512", Family::kEcdsa, 512},  {"HS256", Family::kHmac, 256},
      {"HS384", Family::kHmac, 384},   {"HS512", Family::kHmac, 512},
  };
  for (const Row& r : rows) {
    if (name != r.name) continue;
    const EVP_MD* md = r.bits == 256 ? EVP_sha256() : r.bits == 384 ? EVP_sha384() : EVP_sha512();
    // P-521 coordinates take 66 bytes.
    const int ec = r.bits == 256 ? 32 : r.bits == 384 ? 48 : 66;
    return Method{r.name, r.family, md, ec};
  }
  return std::nullopt;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// A key file, read up to util::kMaxPemFileBytes.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  absl::StatusOr<std::string> pem = util::ReadPemFile(path);
  if (!pem.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read key file ", path, ": ", pem.status().message()));
  }
  return pem;
}

Pkey ParsePrivate(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return Pkey(k);
}

// The verification key of a pub-key file as etcd 3.4 reads it (golang-jwt's
// Parse{RSA,EC}PublicKeyFromPEM): the file's first PEM block, whatever its
// label, as a SubjectPublicKeyInfo, else as an X.509 certificate whose
// public key is taken. Null when neither parses.
Pkey ParsePublic(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* der = nullptr;
  long der_len = 0;
  const int read = PEM_read_bio(bio, &name, &header, &der, &der_len);
  BIO_free(bio);
  EVP_PKEY* k = nullptr;
  if (read == 1) {
    const unsigned char* p = der;
    k = d2i_PUBKEY(nullptr, &p, der_len);
    if (k == nullptr) {
      p = der;
      X509* cert = d2i_X509(nullptr, &p, der_len);
      if (cert != nullptr) {
        k = X509_get_pubkey(cert);  // a new reference
        X509_free(cert);
      }
    }
  }
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(der);
  ERR_clear_error();
  return Pkey(k);
}

std::string B64(std::string_view s) {
  return absl::WebSafeBase64Escape(absl::string_view(s.data(), s.size()));
}

class JwtTokenProvider final : public TokenProvider {
 public:
  JwtTokenProvider(Method method, Pkey pub, Pkey priv, std::string hmac_key,
                   std::chrono::seconds ttl, util::Clock* clock, util::Logger lg)
      : method_(std::move(method)),
        pub_(std::move(pub)),
        priv_(std::move(priv)),
        hmac_key_(std::move(hmac_key)),
        ttl_(ttl),
        clock_(clock),
        lg_(std::move(lg)) {}

  void Enable() override {}
  void Disable() override {}
  void InvalidateUser(std::string_view) override {}
  std::string GenTokenPrefix() override { return ""; }

  absl::StatusOr<std::string> Assign(std::string_view username, uint64_t revision,
                                     std::string_view, uint64_t) override {
    if (method_.family != Family::kHmac && priv_ == nullptr) return ErrVerifyOnly();
    nlohmann::json header = {{"alg", method_.name}, {"typ", "JWT"}};
    const int64_t exp = (clock_->WallMillis() / 1000) + ttl_.count();
    nlohmann::json claims = {
        {"exp", exp}, {"revision", revision}, {"username", std::string(username)}};
    // A user name need not be valid UTF-8: JSON cannot carry its bytes, so
    // (as Go's encoding/json in etcd) they are written as U+FFFD, and such a
    // token names no user. dump() would throw on them otherwise.
    constexpr auto kReplace = nlohmann::json::error_handler_t::replace;
    const std::string signing_input = absl::StrCat(B64(header.dump(-1, ' ', false, kReplace)), ".",
                                                   B64(claims.dump(-1, ' ', false, kReplace)));
    absl::StatusOr<std::string> sig = Sign(signing_input);
    if (!sig.ok()) return sig.status();
    return absl::StrCat(signing_input, ".", B64(*sig));
  }

  std::optional<AuthInfo> Info(std::string_view token, uint64_t) override {
    std::vector<std::string> parts = absl::StrSplit(std::string(token), '.');
    if (parts.size() != 3) return std::nullopt;
    std::string header_json, claims_json, sig;
    if (!absl::WebSafeBase64Unescape(parts[0], &header_json) ||
        !absl::WebSafeBase64Unescape(parts[1], &claims_json) ||
        !absl::WebSafeBase64Unescape(parts[2], &sig)) {
      return std::nullopt;
    }
    auto header = nlohmann::json::parse(header_json, nullptr, /*allow_exceptions=*/false);
    if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string() ||
        header["alg"].get<std::string>() != method_.name) {
      return std::nullopt;
    }
    const std::string signing_input =
        absl::StrCat(parts[0], ".", parts[1]);
    if (!Verify(signing_input, sig)) {
      lg_.Warn("failed to verify a JWT token");
      return std::nullopt;
    }
    auto claims = nlohmann::json::parse(claims_json, nullptr, false);
    if (!claims.is_object() || !claims.contains("username") || !claims["username"].is_string() ||
        !claims.contains("revision") || !claims["revision"].is_number()) {
      return std::nullopt;
    }
    if (claims.contains("exp")) {
      if (!claims["exp"].is_number()) return std::nullopt;
      const double exp = claims["exp"].get<double>();
      if (static_cast<double>(clock_->WallMillis()) / 1000.0 > exp) return std::nullopt;
    }
    AuthInfo info;
    info.username = claims["username"].get<std::string>();
    // Any JSON number may come in: only a whole one in uint64's range is a
    // revision (a float outside it would make the conversion undefined).
    const nlohmann::json& rev = claims["revision"];
    if (rev.is_number_unsigned()) {
      info.revision = rev.get<uint64_t>();
    } else if (rev.is_number_float()) {
      const double d = rev.get<double>();
      if (!(d >= 0 && d < 18446744073709551616.0) || d != std::floor(d)) return std::nullopt;
      info.revision = static_cast<uint64_t>(d);
    } else {
      return std::nullopt;  // negative
    }
    return info;
  }

 private:
  absl::StatusOr<std::string> Sign(const std::string& input) {
    if (method_.family == Family::kHmac) return Hmac(input);
    MdCtx ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    if (EVP_DigestSignInit(ctx.get(), &pctx, method_.md, nullptr, priv_.get()) != 1) {
      return absl::InternalError("EVP_DigestSignInit failed");
    }
    if (method_.family == Family::kRsaPss) {
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    size_t len = 0;
    const auto* in = reinterpret_cast<const unsigned char*>(input.data());
    if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) {
      return absl::InternalError("EVP_DigestSign failed");
    }
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                       input.size()) != 1) {
      return absl::InternalError("EVP_DigestSign failed");
    }
    sig.resize(len);
    if (method_.family != Family::kEcdsa) return sig;
    // JWS wants r || s, each left-padded to the curve size, not DER.
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    if (es == nullptr) return absl::InternalError("bad ECDSA signature");
    std::string out(2 * method_.ec_bytes, '\0');
    const int n = method_.ec_bytes;
    BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(out.data()), n);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(out.data()) + n, n);
    ECDSA_SIG_free(es);
    return out;
  }

  absl::StatusOr<std::string> Hmac(const std::string& input) const {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(method_.md, hmac_key_.data(), static_cast<int>(hmac_key_.size()),
             reinterpret_cast<const unsigned char*>(input.data()), input.size(), out,
             &len) == nullptr) {
      return absl::InternalError("HMAC failed");
    }
    return std::string(reinterpret_cast<char*>(out), len);
  }

  bool Verify(const std::string& input, std::string sig) {
    if (method_.family == Family::kHmac) {
      absl::StatusOr<std::string> want = Hmac(input);
      return want.ok() && want->size() == sig.size() &&
             CRYPTO_memcmp(want->data(), sig.data(), sig.size()) == 0;
    }
    if (method_.family == Family::kEcdsa) {
      if (sig.size() != static_cast<size_t>(2 * method_.ec_bytes)) return false;
      const auto* b = reinterpret_cast<const unsigned char*>(sig.data());
      ECDSA_SIG* es = ECDSA_SIG_new();
      ECDSA_SIG_set0(es, BN_bin2bn(b, method_.ec_bytes, nullptr),
                     BN_bin2bn(b + method_.ec_bytes, method_.ec_bytes, nullptr));
      unsigned char* der = nullptr;
      const int der_len = i2d_ECDSA_SIG(es, &der);
      ECDSA_SIG_free(es);
      if (der_len <= 0) return false;
      sig.assign(reinterpret_cast<char*>(der), der_len);
      OPENSSL_free(der);
    }
    MdCtx ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    if (EVP_DigestVerifyInit(ctx.get(), &pctx, method_.md, nullptr, pub_.get()) != 1) return false;
    if (method_.family == Family::kRsaPss) {
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO);
    }
    return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                            sig.size(), reinterpret_cast<const unsigned char*>(input.data()),
                            input.size()) == 1;
  }

  const Method method_;
  const Pkey pub_;   // verification key (never null for RSA/ECDSA)
  const Pkey priv_;  // signing key; null: verify only
  const std::string hmac_key_;
  const std::chrono::seconds ttl_;
  util::Clock* const clock_;
  util::Logger lg_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenProvider>> NewJwtTokenProvider(
    const std::map<std::string, std::string>& opts, util::Clock* clock, util::Logger logger) {
  auto get = [&](const char* k) -> std::string {
    auto it = opts.find(k);
    return it == opts.end() ? "" : it->second;
  };
  std::optional<Method> method = LookupMethod(get("sign-method"));
  if (!method.has_value()) return ErrInvalidAuthMethod();
  std::chrono::seconds ttl{300};
  if (const std::string t = get("ttl"); !t.empty()) {
    absl::Duration d;
    if (!absl::ParseDuration(t, &d) || d <= absl::ZeroDuration()) return ErrInvalidAuthOpts();
    ttl = std::chrono::seconds(absl::ToInt64Seconds(d));
  }
  std::string pub_pem, priv_pem;
  if (const std::string f = get("pub-key"); !f.empty()) {
    auto r = ReadFile(f);
    if (!r.ok()) return r.status();
    pub_pem = std::move(*r);
  }
  if (const std::string f = get("priv-key"); !f.empty()) {
    auto r = ReadFile(f);
    if (!r.ok()) return r.status();
    priv_pem = std::move(*r);
  }
  if (method->family == Family::kHmac) {
    if (priv_pem.empty()) return ErrMissingKey();
    return std::unique_ptr<TokenProvider>(std::make_unique<JwtTokenProvider>(
        *method, nullptr, nullptr, priv_pem, ttl, clock, std::move(logger)));
  }
  if (pub_pem.empty() && priv_pem.empty()) return ErrMissingKey();
  Pkey priv, pub;
  if (!priv_pem.empty()) {
    priv = ParsePrivate(priv_pem);
    if (priv == nullptr) return absl::InvalidArgumentError("auth: cannot parse the private key");
  }
  if (!pub_pem.empty()) {
    pub = ParsePublic(pub_pem);
    if (pub == nullptr) return absl::InvalidArgumentError("auth: cannot parse the public key");
  } else {
    // The private key carries its public half.
    EVP_PKEY_up_ref(priv.get());
    pub.reset(priv.get());
  }
  if (priv != nullptr && EVP_PKEY_eq(pub.get(), priv.get()) != 1) {
    return absl::InvalidArgumentError("auth: public and private keys don't match");
  }
  const int want = (method->family == Family::kEcdsa) ? EVP_PKEY_EC : EVP_PKEY_RSA;
  if (EVP_PKEY_get_base_id(pub.get()) != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth: the key does not suit sign-method ", method->name));
  }
  return std::unique_ptr<TokenProvider>(std::make_unique<JwtTokenProvider>(
      *method, std::move(pub), std::move(priv), "", ttl, clock, std::move(logger)));
}

absl::StatusOr<std::unique_ptr<TokenProvider>> NewTokenProvider(std::string_view auth_token,
                                                                TokenProviderOptions options) {
  static util::SystemClock* system_clock = new util::SystemClock();
  util::Clock* clock = options.clock != nullptr ? options.clock : system_clock;
  std::vector<std::string> parts = absl::StrSplit(std::string(auth_token), ',');
  const std::string type = parts.empty() ? "" : parts[0];
  std::map<std::string, std::string> opts;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::vector<std::string> kv = absl::StrSplit(parts[i], '=');
    if (kv.size() != 2 || opts.count(kv[0]) > 0) return ErrInvalidAuthOpts();
    opts[kv[0]] = kv[1];
  }
  if (type == "simple") {
    options.logger.Warn("simple token is not cryptographically signed");
    return NewSimpleTokenProvider(clock, options.simple_ttl, std::move(options.wait_applied),
                                  std::move(options.logger));
  }
  if (type == "jwt") return NewJwtTokenProvider(opts, clock, std::move(options.logger));
  if (type.empty()) return NewNopTokenProvider();
  options.logger.Warn("unknown token type", {{"type", type}});
  return ErrInvalidAuthOpts();
}

}  // namespace cppetcd::auth
