// Test certificates for TLS tests, generated with OpenSSL at run time into a
// directory (PEM files): a CA, a server/peer certificate for 127.0.0.1 and
// localhost, client certificates with chosen CNs ("root", "alice", ...), and
// bad ones: a client certificate from another CA, an expired one, and a
// server certificate from the other CA.
//
// Thread-safety: plain data; MakeTestCerts writes files only under `dir`.
#ifndef CPPETCD_TESTS_INTEGRATION_TEST_CERTS_H_
#define CPPETCD_TESTS_INTEGRATION_TEST_CERTS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cppetcd::integration {

struct CertFiles {
  std::string cert;  // PEM certificate
  std::string key;   // PEM private key (ECDSA P-256)
};

struct TestCerts {
  std::string dir;
  std::string ca;        // ca.pem: the trusted CA
  std::string other_ca;  // other-ca.pem: a CA nobody trusts
  // server.pem/server-key.pem: CN "cppetcd-server", SANs 127.0.0.1,
  // localhost; server and client usages (also the peer certificate).
  CertFiles server;
  // client-<cn>.pem/-key.pem per requested CN, signed by `ca`.
  std::map<std::string, CertFiles> clients;
  CertFiles foreign_client;  // CN "root" signed by other_ca
  CertFiles expired_client;  // CN "root" signed by ca, expired a day ago
  CertFiles foreign_server;  // like server, signed by other_ca
  // server2.pem/server2-key.pem: CN "example2.com", SANs 127.0.0.1 and
  // example2.com (not localhost), signed by `ca`: a second peer identity
  // for --peer-cert-allowed-cn/-hostname (etcd e2e's server2.crt).
  CertFiles server2;

  // The client certificate for `cn` (must have been requested).
  const CertFiles& Client(const std::string& cn) const { return clients.at(cn); }
};

// Creates `dir` if needed and writes every file. Internal on failure.
absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir,
                                        const std::vector<std::string>& client_cns = {"root",
                                                                                      "alice"});

}  // namespace cppetcd::integration

#endif  // CPPETCD_TESTS_INTEGRATION_TEST_CERTS_H_
