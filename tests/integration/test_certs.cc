#include "test_certs.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "cppetcd/util/tls.h"

namespace cppetcd::integration {
namespace {

absl::Status WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<util::PemCertificate> Issue(const util::PemCertificate* issuer,
                                           const std::string& cn,
                                           std::vector<std::string> hosts, bool is_ca,
                                           bool expired = false) {
  util::CertificateRequest req;
  req.common_name = cn;
  req.hosts = std::move(hosts);
  req.is_ca = is_ca;
  if (issuer != nullptr) {
    req.issuer_cert_pem = issuer->cert_pem;
    req.issuer_key_pem = issuer->key_pem;
  }
  if (expired) {
    const auto now = std::chrono::system_clock::now();
    req.not_before = now - std::chrono::hours(48);
    req.not_after = now - std::chrono::hours(24);
  }
  return util::IssueCertificate(req);
}

absl::StatusOr<CertFiles> Save(const std::string& dir, const std::string& stem,
                               const util::PemCertificate& pem) {
  CertFiles f{absl::StrCat(dir, "/", stem, ".pem"), absl::StrCat(dir, "/", stem, "-key.pem")};
  if (absl::Status st = WriteFile(f.cert, pem.cert_pem); !st.ok()) return st;
  if (absl::Status st = WriteFile(f.key, pem.key_pem); !st.ok()) return st;
  std::filesystem::permissions(f.key, std::filesystem::perms::owner_read |
                                          std::filesystem::perms::owner_write);
  return f;
}

}  // namespace

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir,
                                        const std::vector<std::string>& client_cns) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  TestCerts out;
  out.dir = dir;
  // Distinct CA names, so a certificate of the other CA fails on the
  // issuer, not on a signature check against a same-named CA.
  absl::StatusOr<util::PemCertificate> ca = Issue(nullptr, "cppetcd test CA", {}, true);
  absl::StatusOr<util::PemCertificate> other = Issue(nullptr, "untrusted test CA", {}, true);
  if (!ca.ok()) return ca.status();
  if (!other.ok()) return other.status();
  out.ca = dir + "/ca.pem";
  out.other_ca = dir + "/other-ca.pem";
  if (absl::Status st = WriteFile(out.ca, ca->cert_pem); !st.ok()) return st;
  if (absl::Status st = WriteFile(out.other_ca, other->cert_pem); !st.ok()) return st;
  const std::vector<std::string> hosts = {"127.0.0.1", "localhost"};
  struct Item {
    std::string stem;
    const util::PemCertificate* issuer;
    std::string cn;
    std::vector<std::string> hosts;
    bool expired;
    CertFiles* into;
  };
  std::vector<Item> items = {
      {"server", &*ca, "cppetcd-server", hosts, false, &out.server},
      {"foreign-client", &*other, "root", {}, false, &out.foreign_client},
      {"expired-client", &*ca, "root", {}, true, &out.expired_client},
      {"foreign-server", &*other, "cppetcd-server", hosts, false, &out.foreign_server},
      {"server2", &*ca, "example2.com", {"127.0.0.1", "example2.com"}, false, &out.server2},
  };
  for (const std::string& cn : client_cns) {
    items.push_back({"client-" + cn, &*ca, cn, {}, false, &out.clients[cn]});
  }
  for (const Item& it : items) {
    absl::StatusOr<util::PemCertificate> pem = Issue(it.issuer, it.cn, it.hosts, false, it.expired);
    if (!pem.ok()) return pem.status();
    absl::StatusOr<CertFiles> f = Save(dir, it.stem, *pem);
    if (!f.ok()) return f.status();
    *it.into = *f;
  }
  return out;
}

}  // namespace cppetcd::integration
