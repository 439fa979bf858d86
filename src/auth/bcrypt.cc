#include "cppetcd/auth/bcrypt.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include <string>

namespace cppetcd::auth {
namespace {

// libxcrypt's "$2b$" is the corrected bcrypt that Go implements under the
// "$2a$" label (its own "$2a$" keeps a countermeasure for an old 8-bit bug
// that changes some hashes), so hashing and checking run as "$2b$" and the
// stored label stays Go's.
std::string AsTwoB(std::string_view hash) {
  return "$2b$" + std::string(hash.substr(4));
}

bool WellFormed(std::string_view hash) {
  // $2x$NN$ + 53 characters of salt and hash.
  if (hash.size() != 60 || hash[0] != '$' || hash[1] != '2' || hash[3] != '$' || hash[6] != '$') {
    return false;
  }
  return hash[2] == 'a' || hash[2] == 'b' || hash[2] == 'y';
}

}  // namespace

absl::StatusOr<std::string> BcryptHash(std::string_view password, int cost) {
  if (cost < kBcryptMinCost || cost > kBcryptMaxCost) {
    return absl::InvalidArgumentError(absl::StrCat("invalid bcrypt cost ", cost));
  }
  unsigned char random[16];
  if (RAND_bytes(random, sizeof(random)) != 1) return absl::InternalError("RAND_bytes failed");
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2b$", static_cast<unsigned long>(cost),
                       reinterpret_cast<const char*>(random), sizeof(random), setting,
                       sizeof(setting)) == nullptr) {
    return absl::InternalError("crypt_gensalt_rn failed");
  }
  auto data = std::make_unique<crypt_data>();
  const std::string pw(password.substr(0, 72));
  const char* out = crypt_rn(pw.c_str(), setting, data.get(), sizeof(crypt_data));
  if (out == nullptr || out[0] == '*') return absl::InternalError("crypt_rn failed");
  std::string hash(out);
  if (!WellFormed(hash)) return absl::InternalError("unexpected bcrypt output");
  hash[2] = 'a';
  return hash;
}

bool BcryptCheck(std::string_view hash, std::string_view password) {
  if (!WellFormed(hash)) return false;
  const std::string setting = AsTwoB(hash);
  auto data = std::make_unique<crypt_data>();
  const std::string pw(password.substr(0, 72));
  const char* out = crypt_rn(pw.c_str(), setting.c_str(), data.get(), sizeof(crypt_data));
  if (out == nullptr || out[0] == '*') return false;
  const std::string_view got(out);
  if (got.size() != setting.size()) return false;
  return CRYPTO_memcmp(got.data(), setting.data(), got.size()) == 0;
}

}  // namespace cppetcd::auth
