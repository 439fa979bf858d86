// Private to src/auth: constructors of the token providers behind
// NewTokenProvider (token.h).
#ifndef CPPETCD_SRC_AUTH_TOKEN_IMPL_H_
#define CPPETCD_SRC_AUTH_TOKEN_IMPL_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cppetcd/auth/token.h"

namespace cppetcd::auth {

std::unique_ptr<TokenProvider> NewSimpleTokenProvider(util::Clock* clock, std::chrono::seconds ttl,
                                                      std::function<bool(uint64_t)> wait_applied,
                                                      util::Logger logger);
std::unique_ptr<TokenProvider> NewNopTokenProvider();
// `opts`: the key=value options after "jwt," (sign-method, pub-key,
// priv-key, ttl).
absl::StatusOr<std::unique_ptr<TokenProvider>> NewJwtTokenProvider(
    const std::map<std::string, std::string>& opts, util::Clock* clock, util::Logger logger);

}  // namespace cppetcd::auth

#endif  // CPPETCD_SRC_AUTH_TOKEN_IMPL_H_
