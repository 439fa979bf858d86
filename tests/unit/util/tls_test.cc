// util/tls: start-up validation of certificate files, etcd's self-signed
// certificates, the server SSL_CTX and certificate issuing.
#include "cppetcd/util/tls.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cppetcd/util/fault_injection_env.h"

namespace cppetcd::util {
namespace {

using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tls_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  std::string Write(const std::string& name, const std::string& data) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << data;
    return path;
  }

  // A CA and a server certificate for 127.0.0.1 signed by it, as files.
  TlsInfo MakeSignedServer() {
    CertificateRequest ca_req;
    ca_req.common_name = "test-ca";
    ca_req.is_ca = true;
    auto ca = IssueCertificate(ca_req);
    EXPECT_TRUE(ca.ok()) << ca.status();
    CertificateRequest req;
    req.common_name = "server";
    req.hosts = {"127.0.0.1", "localhost"};
    req.issuer_cert_pem = ca->cert_pem;
    req.issuer_key_pem = ca->key_pem;
    auto leaf = IssueCertificate(req);
    EXPECT_TRUE(leaf.ok()) << leaf.status();
    TlsInfo info;
    info.cert_file = Write("server.pem", leaf->cert_pem);
    info.key_file = Write("server-key.pem", leaf->key_pem);
    info.trusted_ca_file = Write("ca.pem", ca->cert_pem);
    return info;
  }

  std::string dir_;
};

TEST_F(TlsTest, ValidInfoPasses) {
  TlsInfo info = MakeSignedServer();
  info.client_cert_auth = true;
  EXPECT_TRUE(ValidateTlsInfo(info).ok()) << ValidateTlsInfo(info);
  EXPECT_TRUE(ValidateTlsInfo(TlsInfo{}).ok());  // nothing configured
}

TEST_F(TlsTest, MissingFileNamesItInGoWords) {
  TlsInfo info = MakeSignedServer();
  info.cert_file = dir_ + "/nope.pem";
  absl::Status st = ValidateTlsInfo(info);
  EXPECT_TRUE(absl::IsInvalidArgument(st));
  EXPECT_EQ(st.message(), "open " + dir_ + "/nope.pem: no such file or directory");
}

// A file that never ends (or is huge) is refused after kMaxPemFileBytes,
// not read until memory runs out.
TEST_F(TlsTest, EndlessFileIsRefusedAtTheBound) {
  absl::StatusOr<std::string> pem = ReadPemFile("/dev/zero");
  ASSERT_FALSE(pem.ok());
  EXPECT_THAT(std::string(pem.status().message()),
              ::testing::HasSubstr("read /dev/zero: file is larger than 64 MiB"));
  TlsInfo info;
  info.cert_file = "/dev/zero";
  info.key_file = "/dev/zero";
  EXPECT_FALSE(ValidateTlsInfo(info).ok());
}

// SelfCert's files go through the Env: a failed write of the certificate
// is an error and leaves no certificate (so the next start makes a fresh
// pair instead of reusing half of one); a failed read of an operator file
// is InvalidArgument naming it.
TEST_F(TlsTest, SelfCertAndReadPemFileThroughAFaultyEnv) {
  FaultInjectionEnv env(Env::Default());
  const std::string fixtures = dir_ + "/auto";
  env.FailCalls(FaultInjectionEnv::Call::kRename, 1, EIO, "cert.pem");
  auto info = SelfCert(fixtures, {"127.0.0.1:2379"}, std::chrono::hours(24), &env);
  ASSERT_FALSE(info.ok());
  EXPECT_NE(info.status().message().find("(injected)"), std::string::npos) << info.status();
  EXPECT_FALSE(env.FileExists(fixtures + "/cert.pem"));
  EXPECT_FALSE(env.FileExists(fixtures + "/cert.pem.tmp"));
  auto again = SelfCert(fixtures, {"127.0.0.1:2379"}, std::chrono::hours(24), &env);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(ValidateTlsInfo(*again).ok());

  env.FailCalls(FaultInjectionEnv::Call::kRead, 1, EIO, "key.pem");
  auto pem = ReadPemFile(again->key_file, &env);
  EXPECT_TRUE(absl::IsInvalidArgument(pem.status())) << pem.status();
  EXPECT_NE(pem.status().message().find(again->key_file), std::string::npos) << pem.status();
  EXPECT_TRUE(ReadPemFile(again->key_file, &env).ok());
}

TEST_F(TlsTest, CertWithoutKeyIsRejected) {
  TlsInfo info = MakeSignedServer();
  info.key_file.clear();
  EXPECT_THAT(ValidateTlsInfo(info).message(), HasSubstr("KeyFile and CertFile must both be present"));
}

TEST_F(TlsTest, KeyNotMatchingCertificate) {
  TlsInfo info = MakeSignedServer();
  auto other = IssueCertificate(CertificateRequest{});
  ASSERT_TRUE(other.ok());
  info.key_file = Write("other-key.pem", other->key_pem);
  EXPECT_THAT(ValidateTlsInfo(info).message(),
              HasSubstr("tls: private key does not match public key"));
}

TEST_F(TlsTest, GarbageFilesAreRejected) {
  TlsInfo info = MakeSignedServer();
  TlsInfo bad_cert = info;
  bad_cert.cert_file = Write("garbage.pem", "not a certificate\n");
  EXPECT_THAT(ValidateTlsInfo(bad_cert).message(),
              HasSubstr("failed to find any PEM data in certificate input"));
  TlsInfo bad_key = info;
  bad_key.key_file = Write("garbage-key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n");
  EXPECT_THAT(ValidateTlsInfo(bad_key).message(),
              HasSubstr("failed to find any PEM data in key input"));
  TlsInfo bad_ca = info;
  bad_ca.trusted_ca_file = Write("garbage-ca.pem", "hello\n");
  EXPECT_THAT(ValidateTlsInfo(bad_ca).message(), HasSubstr("no PEM certificate found"));
  EXPECT_FALSE(NewServerSslContext(bad_ca).ok());
}

TEST_F(TlsTest, SelfCertWritesAndReusesFiles) {
  const std::string fixtures = dir_ + "/data/fixtures/client";
  auto info = SelfCert(fixtures, {"127.0.0.1:2379", "localhost:2379"});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->self_signed);
  EXPECT_EQ(info->cert_file, fixtures + "/cert.pem");
  EXPECT_EQ(info->key_file, fixtures + "/key.pem");
  EXPECT_TRUE(ValidateTlsInfo(*info).ok());
  struct stat st;
  ASSERT_EQ(stat(info->key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto first = ReadPemFile(info->cert_file);
  ASSERT_TRUE(first.ok());

  // The certificate: P-256, O=etcd, SANs for the hosts, about a year.
  BIO* bio = BIO_new_mem_buf(first->data(), static_cast<int>(first->size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_host(cert, "localhost", 9, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(cert, "example.com", 11, 0, nullptr), 1);
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)), 1);
  EXPECT_EQ(days, 365);
  EVP_PKEY* key = X509_get0_pubkey(cert);
  EXPECT_EQ(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(key), 256);
  X509_free(cert);

  // A restart reuses them unchanged.
  auto again = SelfCert(fixtures, {"127.0.0.1:2379"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*ReadPemFile(again->cert_file), *first);
}

TEST_F(TlsTest, ServerContextNeedsCertificate) {
  EXPECT_FALSE(NewServerSslContext(TlsInfo{}).ok());
  TlsInfo info = MakeSignedServer();
  info.client_cert_auth = true;
  auto ctx = NewServerSslContext(info);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx->get()),
            SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx->get()), TLS1_2_VERSION);
  info.client_cert_auth = false;
  auto no_auth = NewServerSslContext(info);
  ASSERT_TRUE(no_auth.ok());
  EXPECT_EQ(SSL_CTX_get_verify_mode(no_auth->get()), SSL_VERIFY_NONE);
}

// The CN of the certificate a server context presents.
std::string ContextCn(ssl_ctx_st* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (cert == nullptr) return "";
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof(buf));
  return buf;
}

// Replaces `path` as an operator's rotation would (write aside, rename).
void Replace(const std::string& path, const std::string& data) {
  std::ofstream(path + ".new") << data;
  ASSERT_EQ(std::rename((path + ".new").c_str(), path.c_str()), 0);
}

TEST_F(TlsTest, ReloadingContextFollowsRotatedFiles) {
  TlsInfo info = MakeSignedServer();
  auto rc = ReloadingServerSslContext::Create(info, nullptr, std::chrono::milliseconds(0));
  ASSERT_TRUE(rc.ok()) << rc.status();
  std::shared_ptr<ssl_ctx_st> first = (*rc)->Get();
  EXPECT_EQ(ContextCn(first.get()), "server");
  EXPECT_EQ((*rc)->Get(), first);  // unchanged files: the same context
  EXPECT_EQ((*rc)->reloads(), 0u);

  CertificateRequest req;
  req.common_name = "rotated";
  req.hosts = {"127.0.0.1"};
  auto next = IssueCertificate(req);
  ASSERT_TRUE(next.ok());
  // Half-way through a rotation (new certificate, old key): the previous
  // context stays in use.
  Replace(info.cert_file, next->cert_pem);
  EXPECT_EQ((*rc)->Get(), first);
  EXPECT_EQ((*rc)->failed_reloads(), 1u);
  Replace(info.key_file, next->key_pem);
  std::shared_ptr<ssl_ctx_st> second = (*rc)->Get();
  EXPECT_NE(second, first);
  EXPECT_EQ(ContextCn(second.get()), "rotated");
  EXPECT_EQ((*rc)->reloads(), 1u);
  EXPECT_EQ(ContextCn(first.get()), "server");  // held contexts stay valid

  // A removed file fails the rebuild too; the last good context stays.
  ASSERT_EQ(::unlink(info.cert_file.c_str()), 0);
  EXPECT_EQ((*rc)->Get(), second);
  EXPECT_EQ((*rc)->failed_reloads(), 2u);
}

TEST_F(TlsTest, ReloadingContextChecksAtMostOncePerInterval) {
  TlsInfo info = MakeSignedServer();
  auto rc = ReloadingServerSslContext::Create(info, nullptr, std::chrono::hours(1));
  ASSERT_TRUE(rc.ok()) << rc.status();
  std::shared_ptr<ssl_ctx_st> first = (*rc)->Get();
  CertificateRequest req;
  req.common_name = "rotated";
  auto next = IssueCertificate(req);
  ASSERT_TRUE(next.ok());
  Replace(info.cert_file, next->cert_pem);
  Replace(info.key_file, next->key_pem);
  EXPECT_EQ((*rc)->Get(), first);  // not due for a check yet
  EXPECT_EQ((*rc)->reloads(), 0u);
}

TEST_F(TlsTest, ReloadingContextAppliesTheCustomization) {
  TlsInfo info = MakeSignedServer();
  auto rc = ReloadingServerSslContext::Create(
      info, [](ssl_ctx_st* c) { SSL_CTX_set_options(c, SSL_OP_NO_TICKET); },
      std::chrono::milliseconds(0));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_NE(SSL_CTX_get_options((*rc)->Get().get()) & SSL_OP_NO_TICKET, 0u);
  CertificateRequest req;
  req.common_name = "rotated";
  auto next = IssueCertificate(req);
  ASSERT_TRUE(next.ok());
  Replace(info.key_file, next->key_pem);
  Replace(info.cert_file, next->cert_pem);
  ASSERT_EQ(ContextCn((*rc)->Get().get()), "rotated");
  EXPECT_NE(SSL_CTX_get_options((*rc)->Get().get()) & SSL_OP_NO_TICKET, 0u);
}

TEST_F(TlsTest, IssuedLeafVerifiesAgainstItsCaOnly) {
  CertificateRequest ca_req;
  ca_req.is_ca = true;
  ca_req.common_name = "ca";
  auto ca = IssueCertificate(ca_req);
  auto other_ca = IssueCertificate(ca_req);
  ASSERT_TRUE(ca.ok() && other_ca.ok());
  CertificateRequest req;
  req.common_name = "alice";
  req.issuer_cert_pem = ca->cert_pem;
  req.issuer_key_pem = ca->key_pem;
  auto leaf = IssueCertificate(req);
  ASSERT_TRUE(leaf.ok());
  auto load = [](const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    return x;
  };
  auto verify = [&](const std::string& ca_pem) {
    X509_STORE* store = X509_STORE_new();
    X509* ca_cert = load(ca_pem);
    X509_STORE_add_cert(store, ca_cert);
    X509* cert = load(leaf->cert_pem);
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, cert, nullptr);
    const int ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_free(cert);
    X509_free(ca_cert);
    X509_STORE_free(store);
    return ok == 1;
  };
  EXPECT_TRUE(verify(ca->cert_pem));
  EXPECT_FALSE(verify(other_ca->cert_pem));
}

// --cipher-suites: Go's names to OpenSSL's, in order, duplicates and TLS 1.3
// names dropped; etcd's message for an unknown name.
TEST(CipherSuitesTest, GoNamesMapToOpenSsl) {
  auto list = OpenSslCipherList({"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                                 "TLS_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
                                 "TLS_RSA_WITH_AES_256_GCM_SHA384"});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:AES256-GCM-SHA384");
  EXPECT_EQ(*OpenSslCipherList({}), "");
  auto bogus = OpenSslCipherList({"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "BOGUS"});
  ASSERT_FALSE(bogus.ok());
  EXPECT_EQ(bogus.status().message(), "unexpected TLS cipher suite \"BOGUS\"");
  // Known to Go, absent from OpenSSL 3: refused, not dropped.
  auto rc4 = OpenSslCipherList({"TLS_RSA_WITH_RC4_128_SHA"});
  ASSERT_FALSE(rc4.ok());
  EXPECT_THAT(std::string(rc4.status().message()), ::testing::HasSubstr("not available"));
  EXPECT_FALSE(OpenSslCipherList({"TLS_AES_256_GCM_SHA384"}).ok());
}

// etcd 3.4 TLSInfo AllowedCN / AllowedHostname: the leaf's CN exactly, or
// Go's VerifyHostname (DNS or IP SANs, wildcards; never the CN).
TEST(CertificateIdentityTest, AllowedCnAndHostname) {
  CertificateRequest ca_req;
  ca_req.common_name = "ca";
  ca_req.is_ca = true;
  absl::StatusOr<PemCertificate> ca = IssueCertificate(ca_req);
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto issue = [&](const std::string& cn, std::vector<std::string> hosts) {
    CertificateRequest r;
    r.common_name = cn;
    r.hosts = std::move(hosts);
    r.issuer_cert_pem = ca->cert_pem;
    r.issuer_key_pem = ca->key_pem;
    absl::StatusOr<PemCertificate> c = IssueCertificate(r);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->cert_pem : std::string();
  };
  const std::string server = issue("example.com", {"127.0.0.1", "localhost", "*.peers.test"});
  const std::string cn_only = issue("localhost", {});
  TlsInfo none;
  EXPECT_TRUE(CheckCertificateIdentity(none, cn_only).ok());
  TlsInfo by_cn;
  by_cn.allowed_cn = "example.com";
  EXPECT_TRUE(CheckCertificateIdentity(by_cn, server).ok());
  by_cn.allowed_cn = "example2.com";
  absl::Status st = CheckCertificateIdentity(by_cn, server);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(st.message(), "client certificate authentication failed");
  TlsInfo by_host;
  for (const char* ok : {"localhost", "127.0.0.1", "a.peers.test"}) {
    by_host.allowed_hostname = ok;
    EXPECT_TRUE(CheckCertificateIdentity(by_host, server).ok()) << ok;
  }
  for (const char* bad : {"example.com", "127.0.0.2", "a.b.peers.test", "example2.com"}) {
    by_host.allowed_hostname = bad;
    EXPECT_FALSE(CheckCertificateIdentity(by_host, server).ok()) << bad;
  }
  by_host.allowed_hostname = "localhost";  // only the CN names it: refused
  EXPECT_FALSE(CheckCertificateIdentity(by_host, cn_only).ok());
  EXPECT_FALSE(CheckCertificateIdentity(by_host, "not a certificate").ok());
  EXPECT_EQ(CertificateCommonName(server), "example.com");
  EXPECT_EQ(CertificateCommonName("garbage"), std::nullopt);
}

}  // namespace
}  // namespace cppetcd::util
