#include "cppetcd/auth/credentials.h"

#include <utility>

namespace cppetcd::auth {
namespace {

thread_local const Credentials* current = nullptr;

}  // namespace

ScopedCredentials::ScopedCredentials(Credentials creds)
    : creds_(std::move(creds)), prev_(current) {
  current = &creds_;
}

ScopedCredentials::~ScopedCredentials() { current = prev_; }

const Credentials* CurrentCredentials() { return current; }

}  // namespace cppetcd::auth
