// Who is on the other end of a client connection, as far as TLS proved it.
//
// Connections on which gRPC terminates TLS itself (the gRPC-only client
// URLs of --listen-client-http-urls) carry the CN in the call's
// AuthContext ("x509_common_name"), which CallCredentials reads first;
// this registry serves the connections the client listener relays.
//
// The client listener (client_listener.h) terminates TLS itself and hands
// each connection to gRPC as a file descriptor, so gRPC's own auth context
// knows nothing about the client certificate. The listener records the
// verified certificate's Common Name here under the connection's gRPC peer
// string; the Auth layer looks it up (etcd: with --client-cert-auth and auth
// enabled, a call without a token is made as the user named by the CN).
// That string is "fd:N", and N is reused once gRPC closes a connection: the
// listener sets or clears the record for N before every hand-off to gRPC
// and only the connection that set it clears it, so a connection never
// sees another's CN at the start of its calls (issue 12 asks for the
// identity to travel with the connection instead).
//
// Thread-safety: all functions are thread-safe.
#ifndef CPPETCD_API_CLIENT_IDENTITY_H_
#define CPPETCD_API_CLIENT_IDENTITY_H_

#include <optional>
#include <string>
#include <string_view>

namespace cppetcd::api {

// Records `common_name` for calls whose grpc::ServerContext::peer() is
// `grpc_peer`. Replaces an earlier record for the same peer string.
void SetClientCommonName(std::string grpc_peer, std::string common_name);
// Forgets the record (connection closed).
void ClearClientCommonName(std::string_view grpc_peer);
// The CN of the verified client certificate of the connection a call came
// on (pass grpc::ServerContext::peer()); nullopt for plain connections and
// TLS connections without a client certificate.
std::optional<std::string> ClientCommonName(std::string_view grpc_peer);

}  // namespace cppetcd::api

#endif  // CPPETCD_API_CLIENT_IDENTITY_H_
