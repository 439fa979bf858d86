// Simple tokens: "<16 letters>.<raft index>" kept in memory by every member
// that applied the Authenticate entry, each with its own expiry.
#include <openssl/rand.h>

#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/util/mutex.h"
#include "src/auth/token_impl.h"

namespace cppetcd::auth {
namespace {

constexpr std::string_view kLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr size_t kPrefixLength = 16;

class SimpleTokenProvider final : public TokenProvider {
 public:
  SimpleTokenProvider(util::Clock* clock, std::chrono::seconds ttl,
                      std::function<bool(uint64_t)> wait_applied, util::Logger logger)
      : clock_(clock),
        ttl_(ttl.count() > 0 ? ttl : std::chrono::seconds(300)),
        wait_applied_(std::move(wait_applied)),
        lg_(std::move(logger)) {}

  void Enable() override {
    util::MutexLock l(&mu_);
    enabled_ = true;
  }
  void Disable() override {
    util::MutexLock l(&mu_);
    enabled_ = false;
    tokens_.clear();
  }
  void InvalidateUser(std::string_view username) override {
    util::MutexLock l(&mu_);
    for (auto it = tokens_.begin(); it != tokens_.end();) {
      if (it->second.username == username) {
        it = tokens_.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::string GenTokenPrefix() override {
    std::string out;
    out.reserve(kPrefixLength);
    while (out.size() < kPrefixLength) {
      unsigned char b[32];
      if (RAND_bytes(b, sizeof(b)) != 1) lg_.Fatal("RAND_bytes failed");
      for (unsigned char c : b) {
        // 52 letters: reject 208..255 so that every letter is equally likely.
        if (c >= 208 || out.size() == kPrefixLength) continue;
        out.push_back(kLetters[c % kLetters.size()]);
      }
    }
    return out;
  }

  absl::StatusOr<std::string> Assign(std::string_view username, uint64_t, std::string_view prefix,
                                     uint64_t index) override {
    std::string token = absl::StrCat(std::string(prefix), ".", index);
    util::MutexLock l(&mu_);
    if (!enabled_) return token;  // as etcd: handed out, but never valid here
    const auto now = clock_->Now();
    for (auto it = tokens_.begin(); it != tokens_.end();) {
      if (it->second.expiry <= now) {
        lg_.Info("deleted a simple token", {{"user-name", it->second.username}});
        it = tokens_.erase(it);
      } else {
        ++it;
      }
    }
    tokens_[token] = Entry{std::string(username), now + ttl_};
    return token;
  }

  std::optional<AuthInfo> Info(std::string_view token, uint64_t current_revision) override {
    const size_t dot = token.find('.');
    uint64_t index = 0;
    if (dot == std::string_view::npos || token.find('.', dot + 1) != std::string_view::npos ||
        !absl::SimpleAtoi(absl::string_view(token.data() + dot + 1, token.size() - dot - 1),
                          &index)) {
      return std::nullopt;
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      {
        util::MutexLock l(&mu_);
        auto it = tokens_.find(std::string(token));
        if (it != tokens_.end()) {
          const auto now = clock_->Now();
          if (it->second.expiry <= now) {
            tokens_.erase(it);
            return std::nullopt;
          }
          it->second.expiry = now + ttl_;
          return AuthInfo{it->second.username, current_revision};
        }
        if (!enabled_) return std::nullopt;
      }
      // Issued through raft but perhaps not applied here yet.
      if (attempt > 0 || !wait_applied_ || !wait_applied_(index)) break;
    }
    return std::nullopt;
  }

 private:
  struct Entry {
    std::string username;
    util::Clock::TimePoint expiry;
  };

  util::Clock* const clock_;
  const std::chrono::seconds ttl_;
  const std::function<bool(uint64_t)> wait_applied_;
  util::Logger lg_;
  util::Mutex mu_;
  bool enabled_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Entry, std::less<>> tokens_ ABSL_GUARDED_BY(mu_);
};

// --auth-token "": no tokens at all.
class NopTokenProvider final : public TokenProvider {
 public:
  void Enable() override {}
  void Disable() override {}
  void InvalidateUser(std::string_view) override {}
  std::string GenTokenPrefix() override { return ""; }
  absl::StatusOr<std::string> Assign(std::string_view, uint64_t, std::string_view,
                                     uint64_t) override {
    return absl::UnimplementedError("auth: token provider is not configured");
  }
  std::optional<AuthInfo> Info(std::string_view, uint64_t) override { return std::nullopt; }
};

}  // namespace

std::unique_ptr<TokenProvider> NewSimpleTokenProvider(util::Clock* clock, std::chrono::seconds ttl,
                                                      std::function<bool(uint64_t)> wait_applied,
                                                      util::Logger logger) {
  return std::make_unique<SimpleTokenProvider>(clock, ttl, std::move(wait_applied),
                                               std::move(logger));
}

std::unique_ptr<TokenProvider> NewNopTokenProvider() {
  return std::make_unique<NopTokenProvider>();
}

}  // namespace cppetcd::auth
