// Fuzz target: auth tokens as a client sends them (the "token" metadata).
// The first input byte picks the path, the rest is the token or its parts:
//   0: Info() of an HS256 JWT provider on the raw bytes;
//   1: Info() of an ES256 JWT provider (key made at start-up) on the raw bytes;
//   2: a JWT whose header and claims are the fuzzed JSON (split at the first
//      "\n.\n"), correctly signed with the HS256 key, so that the claim
//      checks after the signature are reached;
//   3: Info() of the simple-token provider on the raw bytes.
// Invariants: no crash, no undefined behaviour (claims of any JSON type and
// value); a token Assign made verifies to its user and revision.
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/auth/token.h"
#include "cppetcd/util/clock.h"
#include "fuzz_util.h"
#include "src/auth/token_impl.h"

namespace {

using namespace cppetcd;

constexpr char kHmacKey[] = "fuzz-hmac-key-0123456789";

std::string WriteFile(const std::string& name, const std::string& content) {
  const std::string path = fuzz::ScratchDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::string NewEcKeyPem() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  FUZZ_CHECK(key != nullptr, "EC key generation");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  const long n = BIO_get_mem_data(bio, &p);
  std::string pem(p, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

struct Providers {
  util::SystemClock clock;
  std::unique_ptr<auth::TokenProvider> hs256, es256, simple;
  Providers() {
    fuzz::QuietLogs();
    auto hs = auth::NewJwtTokenProvider(
        {{"sign-method", "HS256"}, {"priv-key", WriteFile("hmac.key", kHmacKey)}}, &clock,
        util::GetLogger("auth"));
    FUZZ_CHECK(hs.ok(), hs.status().ToString());
    hs256 = std::move(*hs);
    auto es = auth::NewJwtTokenProvider(
        {{"sign-method", "ES256"}, {"priv-key", WriteFile("ec.pem", NewEcKeyPem())}}, &clock,
        util::GetLogger("auth"));
    FUZZ_CHECK(es.ok(), es.status().ToString());
    es256 = std::move(*es);
    simple = auth::NewSimpleTokenProvider(&clock, std::chrono::seconds(300), nullptr,
                                          util::GetLogger("auth"));
    simple->Enable();
    // Sanity: tokens made here verify.
    for (auth::TokenProvider* p : {hs256.get(), es256.get()}) {
      auto t = p->Assign("root", 7, "", 1);
      FUZZ_CHECK(t.ok(), t.status().ToString());
      auto info = p->Info(*t, 7);
      FUZZ_CHECK(info.has_value() && info->username == "root" && info->revision == 7,
                 "a token assigned here does not verify");
    }
  }
};

std::string B64(std::string_view s) {
  std::string out;
  absl::WebSafeBase64Escape(absl::string_view(s.data(), s.size()), &out);
  return out;
}

std::string SignHs256(std::string_view header_json, std::string_view claims_json) {
  const std::string input = absl::StrCat(B64(header_json), ".", B64(claims_json));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kHmacKey, static_cast<int>(sizeof(kHmacKey) - 1),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return absl::StrCat(input, ".", B64(std::string_view(reinterpret_cast<char*>(mac), len)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Providers* p = new Providers();
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (mode) {
    case 0:
      (void)p->hs256->Info(rest, 1);
      break;
    case 1:
      (void)p->es256->Info(rest, 1);
      break;
    case 2: {
      const size_t cut = rest.find("\n.\n");
      std::string_view header = R"({"alg":"HS256","typ":"JWT"})";
      std::string_view claims = rest;
      if (cut != std::string_view::npos) {
        header = rest.substr(0, cut);
        claims = rest.substr(cut + 3);
      }
      (void)p->hs256->Info(SignHs256(header, claims), 1);
      break;
    }
    case 3:
      (void)p->simple->Info(rest, 1);
      break;
  }
  return 0;
}
