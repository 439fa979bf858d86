// bcrypt password hashes as etcd stores them (Go's golang.org/x/crypto/bcrypt:
// "$2a$<cost>$<22-char salt><31-char hash>"), computed with libxcrypt.
#ifndef CPPETCD_AUTH_BCRYPT_H_
#define CPPETCD_AUTH_BCRYPT_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace cppetcd::auth {

// etcd's --bcrypt-cost bounds and default (bcrypt.MinCost/MaxCost/DefaultCost).
inline constexpr int kBcryptMinCost = 4;
inline constexpr int kBcryptMaxCost = 31;
inline constexpr int kBcryptDefaultCost = 10;

// A "$2a$" hash of `password` with a fresh random salt at `cost` (4..31).
// Only the first 72 bytes of the password count, as in every bcrypt.
// InvalidArgument for a bad cost; Internal if libxcrypt fails.
absl::StatusOr<std::string> BcryptHash(std::string_view password, int cost);

// Whether `hash` ("$2a$", "$2b$" or "$2y$", as made by Go, OpenBSD or
// htpasswd) is the hash of `password`. False for a malformed hash.
// Constant time in the hash comparison. Thread-safe.
bool BcryptCheck(std::string_view hash, std::string_view password);

}  // namespace cppetcd::auth

#endif  // CPPETCD_AUTH_BCRYPT_H_
