// The credentials a client call arrived with, handed from the gRPC services
// (api) to the server without changing every request signature: the service
// opens a ScopedCredentials around its synchronous call into the server,
// and the server reads CurrentCredentials() on entry, before any hop to
// another thread (the Go analogue is etcd's per-call context metadata).
//
// Thread-safety: the current credentials are per thread.
#ifndef CPPETCD_AUTH_CREDENTIALS_H_
#define CPPETCD_AUTH_CREDENTIALS_H_

#include <optional>
#include <string>

namespace cppetcd::auth {

struct Credentials {
  // gRPC metadata "token" (clientv3), else "authorization" (HTTP gateway).
  std::optional<std::string> token;
  // CN of the verified TLS client certificate (used when there is no token,
  // as etcd with --client-cert-auth).
  std::optional<std::string> common_name;
};

// Makes `creds` the current thread's credentials until destroyed (nests).
class ScopedCredentials {
 public:
  explicit ScopedCredentials(Credentials creds);
  ~ScopedCredentials();
  ScopedCredentials(const ScopedCredentials&) = delete;
  ScopedCredentials& operator=(const ScopedCredentials&) = delete;

 private:
  Credentials creds_;
  const Credentials* prev_;
};

// The innermost ScopedCredentials of this thread, or null (no call context:
// internal requests, which the server treats as carrying no credentials).
const Credentials* CurrentCredentials();

}  // namespace cppetcd::auth

#endif  // CPPETCD_AUTH_CREDENTIALS_H_
