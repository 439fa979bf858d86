// The credentials a client call arrived with. The gRPC services (api) read
// them from the call (api::CallCredentials) and pass them with every request
// to the server, which resolves them to a user on entry (the Go analogue is
// etcd's per-call context). Values, not thread state: a request keeps its
// caller whatever thread serves it.
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

// No credentials: the server's own requests and callers without token or
// certificate (with auth enabled such a caller is nobody: ErrUserEmpty).
inline const Credentials kNoCredentials{};

}  // namespace cppetcd::auth

#endif  // CPPETCD_AUTH_CREDENTIALS_H_
