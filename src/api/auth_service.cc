// etcd v3 Auth service (etcd 3.4 v3rpc/auth.go) and the credentials every
// service hands to the backend (token metadata, TLS client CN).
#include <memory>
#include <string>

#include <grpcpp/security/auth_context.h>

#include "cppetcd/api/client_identity.h"
#include "src/api/services.h"

namespace cppetcd::api {

auth::Credentials CallCredentials(const grpc::ServerContextBase* context) {
  auth::Credentials c;
  const auto& md = context->client_metadata();
  auto it = md.find("token");
  if (it == md.end()) it = md.find("authorization");
  if (it != md.end()) c.token = std::string(it->second.data(), it->second.size());
  // etcd ignores the CN of requests proxied by its own gRPC gateway.
  if (md.find("grpcgateway-accept") == md.end()) {
    // gRPC's own TLS (the gRPC-only client URLs): the verified client
    // certificate's CN travels with the connection in its auth context.
    // Connections the client listener relays (TLS terminated there) carry
    // none; their CN is looked up by peer string.
    const std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
    if (auth != nullptr && auth->IsPeerAuthenticated()) {
      for (const grpc::string_ref& cn : auth->FindPropertyValues("x509_common_name")) {
        c.common_name = std::string(cn.data(), cn.size());
        break;
      }
    } else {
      c.common_name = ClientCommonName(context->peer());
    }
  }
  return c;
}

#define CPPETCD_AUTH_RPC(Method, Req, Resp)                                              \
  grpc::ServerUnaryReactor* AuthService::Method(grpc::CallbackServerContext* context,    \
                                                const etcdserverpb::Req* req,            \
                                                etcdserverpb::Resp* resp) {              \
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();                       \
    if (Admit(context, reactor, backend_, absl::OkStatus())) {                           \
      backend_->Method(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_)); \
    }                                                                                    \
    return reactor;                                                                      \
  }
CPPETCD_AUTH_RPCS(CPPETCD_AUTH_RPC)
#undef CPPETCD_AUTH_RPC

}  // namespace cppetcd::api
