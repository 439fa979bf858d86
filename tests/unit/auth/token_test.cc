#include "cppetcd/auth/token.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "cppetcd/auth/errors.h"

namespace cppetcd::auth {
namespace {

using namespace std::chrono_literals;

TEST(SimpleTokenTest, FormatTtlAndRefresh) {
  util::FakeClock clock;
  TokenProviderOptions o;
  o.clock = &clock;
  o.simple_ttl = 10s;
  auto tp = NewTokenProvider("simple", o);
  ASSERT_TRUE(tp.ok()) << tp.status();
  (*tp)->Enable();
  const std::string prefix = (*tp)->GenTokenPrefix();
  ASSERT_EQ(prefix.size(), 16u);
  for (char c : prefix) EXPECT_TRUE(std::isalpha(static_cast<unsigned char>(c))) << prefix;
  auto tok = (*tp)->Assign("alice", 5, prefix, 77);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(*tok, prefix + ".77");
  clock.Advance(9s);
  auto info = (*tp)->Info(*tok, 8);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->username, "alice");
  EXPECT_EQ(info->revision, 8u);  // the store's current revision
  clock.Advance(9s);              // refreshed by the use above
  EXPECT_TRUE((*tp)->Info(*tok, 8).has_value());
  clock.Advance(11s);
  EXPECT_FALSE((*tp)->Info(*tok, 8).has_value());
  EXPECT_FALSE((*tp)->Info("nodot", 8).has_value());
  EXPECT_FALSE((*tp)->Info("a.b.c", 8).has_value());
}

TEST(SimpleTokenTest, WaitsForTheIndexOnce) {
  util::FakeClock clock;
  TokenProviderOptions o;
  o.clock = &clock;
  std::unique_ptr<TokenProvider>* self = nullptr;
  std::vector<uint64_t> waited;
  o.wait_applied = [&](uint64_t index) {
    waited.push_back(index);
    // The entry gets applied while we wait.
    (void)(*self)->Assign("bob", 1, "abcdefghijklmnop", index);
    return true;
  };
  auto tp = NewTokenProvider("simple", o);
  ASSERT_TRUE(tp.ok());
  self = &*tp;
  (*tp)->Enable();
  auto info = (*tp)->Info("abcdefghijklmnop.9", 3);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->username, "bob");
  EXPECT_EQ(waited, std::vector<uint64_t>{9});
}

TEST(SimpleTokenTest, InvalidateAndDisable) {
  util::FakeClock clock;
  TokenProviderOptions o;
  o.clock = &clock;
  auto tp = NewTokenProvider("simple", o);
  ASSERT_TRUE(tp.ok());
  (*tp)->Enable();
  auto a = (*tp)->Assign("a", 1, "p", 1);
  auto b = (*tp)->Assign("b", 1, "p", 2);
  (*tp)->InvalidateUser("a");
  EXPECT_FALSE((*tp)->Info(*a, 1).has_value());
  EXPECT_TRUE((*tp)->Info(*b, 1).has_value());
  (*tp)->Disable();
  EXPECT_FALSE((*tp)->Info(*b, 1).has_value());
}

TEST(TokenProviderTest, BadOptions) {
  EXPECT_EQ(NewTokenProvider("magic", {}).status().message(), "auth: invalid auth options");
  EXPECT_EQ(NewTokenProvider("jwt,sign-method", {}).status().message(),
            "auth: invalid auth options");
  EXPECT_EQ(NewTokenProvider("jwt,sign-method=XX256", {}).status().message(),
            "auth: invalid auth signature method");
  EXPECT_EQ(NewTokenProvider("jwt,sign-method=RS256", {}).status().message(),
            "auth: missing key data");
  auto nop = NewTokenProvider("", {});
  ASSERT_TRUE(nop.ok());
  EXPECT_FALSE((*nop)->Assign("x", 1, "", 1).ok());
}

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "jwt_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes a fresh key pair as PEM files; returns "pub-key=..,priv-key=..".
  std::string MakeKeys(const std::string& name, EVP_PKEY* key) {
    const std::string pub = dir_ + "/" + name + ".pub", priv = dir_ + "/" + name + ".key";
    FILE* f = fopen(priv.c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    fclose(f);
    f = fopen(pub.c_str(), "w");
    PEM_write_PUBKEY(f, key);
    fclose(f);
    EVP_PKEY_free(key);
    return "pub-key=" + pub + ",priv-key=" + priv;
  }

  // Writes `key`'s private half and a self-signed X.509 certificate of its
  // public half as PEM files; returns "pub-key=<cert>,priv-key=<key>".
  std::string MakeCertAndKey(const std::string& name, EVP_PKEY* key) {
    const std::string cert_path = dir_ + "/" + name + ".crt", priv = dir_ + "/" + name + ".key";
    FILE* f = fopen(priv.c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    fclose(f);
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_NAME* subject = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("jwt"), -1, -1, 0);
    X509_set_issuer_name(cert, subject);
    X509_set_pubkey(cert, key);
    X509_sign(cert, key, EVP_sha256());
    f = fopen(cert_path.c_str(), "w");
    PEM_write_X509(f, cert);
    fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
    return "pub-key=" + cert_path + ",priv-key=" + priv;
  }

  std::string dir_;
  util::FakeClock clock_;
};

// etcd 3.4 (golang-jwt) takes pub-key as a PEM public key or as a PEM
// X.509 certificate whose key it uses; both signing and verify-only members
// start with a certificate.
TEST_F(JwtTest, PublicKeyFromCertificate) {
  const std::string rsa =
      MakeCertAndKey("rsa", EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  const std::string ec = MakeCertAndKey("ec", EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  for (const auto& [method, keys] :
       {std::pair<std::string, std::string>{"RS256", rsa}, {"PS256", rsa}, {"ES256", ec}}) {
    SCOPED_TRACE(method);
    TokenProviderOptions o;
    o.clock = &clock_;
    auto signer = NewTokenProvider("jwt,sign-method=" + method + "," + keys, o);
    ASSERT_TRUE(signer.ok()) << signer.status();
    const std::string cert_only = keys.substr(0, keys.find(','));
    auto verifier = NewTokenProvider("jwt,sign-method=" + method + "," + cert_only, o);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    auto tok = (*signer)->Assign("root", 3, "", 1);
    ASSERT_TRUE(tok.ok()) << tok.status();
    auto info = (*verifier)->Info(*tok, 0);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->username, "root");
    EXPECT_TRUE((*signer)->Info(*tok, 0).has_value());
  }
  // A file that is neither a key nor a certificate is refused.
  const std::string junk = dir_ + "/junk.pem";
  {
    std::ofstream f(junk);
    f << "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  }
  EXPECT_FALSE(NewTokenProvider("jwt,sign-method=RS256,pub-key=" + junk, {}).ok());
  // A key path that never ends is refused at the read bound, not read on.
  auto endless = NewTokenProvider("jwt,sign-method=RS256,pub-key=/dev/zero", {});
  ASSERT_FALSE(endless.ok());
  EXPECT_THAT(std::string(endless.status().message()), ::testing::HasSubstr("larger than"));
}

TEST_F(JwtTest, SignVerifyExpireAndTamper) {
  const std::string rsa = MakeKeys("rsa", EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  const std::string ec = MakeKeys("ec", EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  for (const std::string& opts :
       {"jwt,sign-method=RS256," + rsa + ",ttl=5m", "jwt,sign-method=PS384," + rsa,
        "jwt,sign-method=ES256," + ec + ",ttl=5m"}) {
    SCOPED_TRACE(opts);
    TokenProviderOptions o;
    o.clock = &clock_;
    auto tp = NewTokenProvider(opts, o);
    ASSERT_TRUE(tp.ok()) << tp.status();
    EXPECT_EQ((*tp)->GenTokenPrefix(), "");
    auto tok = (*tp)->Assign("root", 7, "", 3);
    ASSERT_TRUE(tok.ok()) << tok.status();
    std::vector<std::string> parts = absl::StrSplit(*tok, '.');
    ASSERT_EQ(parts.size(), 3u);
    std::string header, claims;
    ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[0], &header));
    ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[1], &claims));
    EXPECT_NE(header.find("\"typ\":\"JWT\""), std::string::npos) << header;
    EXPECT_NE(claims.find("\"username\":\"root\""), std::string::npos) << claims;
    EXPECT_NE(claims.find("\"revision\":7"), std::string::npos) << claims;
    auto info = (*tp)->Info(*tok, 99);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->username, "root");
    EXPECT_EQ(info->revision, 7u);  // the token's own revision
    // Tampered claims fail the signature.
    std::string forged_claims = claims;
    forged_claims.replace(forged_claims.find("root"), 4, "evil");
    const std::string forged =
        parts[0] + "." + absl::WebSafeBase64Escape(forged_claims) + "." + parts[2];
    EXPECT_FALSE((*tp)->Info(forged, 99).has_value());
    EXPECT_FALSE((*tp)->Info(parts[0] + "." + parts[1] + ".", 99).has_value());
    // Expired after the TTL (5 minutes by default).
    clock_.Advance(301s);
    EXPECT_FALSE((*tp)->Info(*tok, 99).has_value());
  }
}

// A user name that is not valid UTF-8 (etcd takes any bytes) cannot be
// carried by JSON: its bytes are written as U+FFFD, as Go's encoding/json
// does in etcd, and the token names that other user. No exception.
TEST_F(JwtTest, UserNameNotValidUtf8IsReplacedNotThrown) {
  const std::string ec = MakeKeys("ec", EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  TokenProviderOptions o;
  o.clock = &clock_;
  auto tp = NewTokenProvider("jwt,sign-method=ES256," + ec, o);
  ASSERT_TRUE(tp.ok()) << tp.status();
  auto tok = (*tp)->Assign("\xff\xfeu", 7, "", 3);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto info = (*tp)->Info(*tok, 99);
  ASSERT_TRUE(info.has_value());
  EXPECT_NE(info->username, "\xff\xfeu");
  EXPECT_EQ(info->username.substr(info->username.size() - 1), "u");
  EXPECT_NE(info->username.find("\xef\xbf\xbd"), std::string::npos);
}

// Found by fuzzing (tests/fuzz/jwt): a validly signed token whose revision
// claim is a negative, fractional or huge number converted a double out of
// uint64's range (undefined behaviour); such a token is now refused.
TEST_F(JwtTest, RevisionClaimOutsideUint64IsRefused) {
  const std::string key = dir_ + "/hmac.key";
  {
    std::ofstream f(key);
    f << "secret";
  }
  TokenProviderOptions o;
  o.clock = &clock_;
  auto tp = NewTokenProvider("jwt,sign-method=HS256,priv-key=" + key, o);
  ASSERT_TRUE(tp.ok()) << tp.status();
  auto sign = [&](const std::string& claims) {
    const std::string input = absl::WebSafeBase64Escape(R"({"alg":"HS256","typ":"JWT"})") + "." +
                              absl::WebSafeBase64Escape(claims);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), "secret", 6, reinterpret_cast<const unsigned char*>(input.data()),
         input.size(), mac, &len);
    return input + "." +
           absl::WebSafeBase64Escape(std::string(reinterpret_cast<char*>(mac), len));
  };
  for (const char* rev : {"18446744073709551616", "1e300", "-1", "-1.5", "2.5"}) {
    SCOPED_TRACE(rev);
    EXPECT_FALSE((*tp)->Info(sign(absl::StrCat(R"({"username":"u","revision":)", rev, "}")), 0)
                     .has_value());
  }
  auto ok = (*tp)->Info(sign(R"({"username":"u","revision":18446744073709551615})"), 0);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->revision, 18446744073709551615u);
  ok = (*tp)->Info(sign(R"({"username":"u","revision":4.0})"), 0);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->revision, 4u);
}

TEST_F(JwtTest, VerifyOnlyMemberAndOtherKeys) {
  const std::string keys = MakeKeys("a", EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  const std::string pub_only = keys.substr(0, keys.find(','));
  TokenProviderOptions o;
  o.clock = &clock_;
  auto signer = NewTokenProvider("jwt,sign-method=RS256," + keys, o);
  auto verifier = NewTokenProvider("jwt,sign-method=RS256," + pub_only, o);
  ASSERT_TRUE(signer.ok() && verifier.ok());
  auto tok = (*signer)->Assign("u", 2, "", 0);
  ASSERT_TRUE(tok.ok());
  EXPECT_TRUE((*verifier)->Info(*tok, 0).has_value());
  EXPECT_EQ((*verifier)->Assign("u", 2, "", 0).status().message(),
            "auth: token signing attempted with verify-only key");
  const std::string other =
      MakeKeys("b", EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  auto stranger = NewTokenProvider("jwt,sign-method=RS256," + other, o);
  ASSERT_TRUE(stranger.ok());
  EXPECT_FALSE((*stranger)->Info(*tok, 0).has_value());
  // A token signed for another method is refused.
  auto rs512 = NewTokenProvider("jwt,sign-method=RS512," + keys, o);
  ASSERT_TRUE(rs512.ok());
  EXPECT_FALSE((*rs512)->Info(*tok, 0).has_value());
}

}  // namespace
}  // namespace cppetcd::auth
