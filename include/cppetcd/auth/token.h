// Auth tokens (etcd 3.4 auth/simple_token.go, auth/jwt.go): what a client
// gets from Authenticate and sends back in the "token" (or HTTP gateway
// "authorization") metadata of every call.
//
// - simple (--auth-token simple): "<16 random letters>.<raft index>", known
//   only to the members that applied the Authenticate entry; each use
//   extends its life to --auth-token-ttl (default 300 s); every member keeps
//   and expires its own copy. Tokens die with auth disable, and a user's with
//   a password change or deletion.
// - jwt (--auth-token jwt,pub-key=F,priv-key=F,sign-method=M[,ttl=D]): a JWS
//   signed with OpenSSL (RS256/384/512, PS256/384/512, ES256/384/512,
//   HS256/384/512) carrying the claims username, revision (the auth revision
//   when issued) and exp (unix seconds); any member with the public key
//   verifies it. With only pub-key a member verifies but cannot issue.
#ifndef CPPETCD_AUTH_TOKEN_H_
#define CPPETCD_AUTH_TOKEN_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/log.h"

namespace cppetcd::auth {

// Who makes a call: the user and the auth revision its credentials are
// valid for (etcd AuthInfo). revision 0 = no credentials at all.
struct AuthInfo {
  std::string username;
  uint64_t revision = 0;
};

// Thread-safe.
class TokenProvider {
 public:
  virtual ~TokenProvider() = default;
  // Auth enabled (at start with auth on, or by AuthEnable) / disabled: a
  // disabled provider forgets every simple token.
  virtual void Enable() = 0;
  virtual void Disable() = 0;
  // Forgets the simple tokens of `username` (password changed, user gone).
  virtual void InvalidateUser(std::string_view username) = 0;
  // What the proposing member puts in the Authenticate raft request: 16
  // random letters for simple tokens, "" for JWT.
  virtual std::string GenTokenPrefix() = 0;
  // Apply time: a token for `username` valid at auth `revision`; `prefix`
  // and `index` (the entry's raft index) form the simple token.
  // ErrVerifyOnly for a JWT provider without a private key.
  virtual absl::StatusOr<std::string> Assign(std::string_view username, uint64_t revision,
                                             std::string_view prefix, uint64_t index) = 0;
  // The caller a token stands for, or nullopt (unknown, expired, bad
  // signature). Simple tokens answer with `current_revision` and are
  // refreshed; JWTs carry their own revision.
  virtual std::optional<AuthInfo> Info(std::string_view token, uint64_t current_revision) = 0;
};

struct TokenProviderOptions {
  util::Clock* clock = nullptr;                 // expiry; null: a SystemClock
  std::chrono::seconds simple_ttl{300};         // --auth-token-ttl
  // Simple tokens: called with the token's raft index when the token is not
  // known (yet); should wait (bounded) until this member applied that index
  // and return whether it did. Null: no waiting.
  std::function<bool(uint64_t index)> wait_applied;
  util::Logger logger{"auth"};
};

// Builds the provider of an --auth-token value: "simple", "jwt,<k=v>,...",
// or "" (no tokens: Authenticate fails, every token is invalid).
// ErrInvalidAuthOpts for an unknown type or malformed option,
// ErrInvalidAuthMethod for an unknown sign-method, InvalidArgument for
// unreadable or mismatched keys.
absl::StatusOr<std::unique_ptr<TokenProvider>> NewTokenProvider(std::string_view auth_token,
                                                                TokenProviderOptions options);

}  // namespace cppetcd::auth

#endif  // CPPETCD_AUTH_TOKEN_H_
