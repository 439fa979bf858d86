// Shared pieces of the single-member EtcdServer tests (etcd_server_test,
// apply_total_test, auth_server_test, maintenance_test): waiting for an
// asynchronous server call, polling, and a fixture that owns a fresh data
// dir and one started member, whose log is printed when a test fails.
//
// Thread-safety: test-thread only, except that Call's completion may run
// on any server thread.
#ifndef CPPETCD_TESTS_UNIT_SERVER_SERVER_TEST_UTIL_H_
#define CPPETCD_TESTS_UNIT_SERVER_SERVER_TEST_UTIL_H_

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"

#include "cppetcd/server/etcd_server.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/log.h"

namespace cppetcd::server::test_util {

// A manual clock for the lessor and the compactor, shared by the members of
// a test (atomic: util::FakeClock's absl::Mutex is invisible to TSan with
// Debian's abseil). Starts one hour after the steady clock's epoch.
class AtomicManualClock final : public util::Clock {
 public:
  TimePoint Now() const override {
    return TimePoint(std::chrono::nanoseconds(now_ns_.load(std::memory_order_acquire)));
  }
  int64_t WallMillis() const override {
    return 1'700'000'000'000 + now_ns_.load(std::memory_order_acquire) / 1'000'000;
  }
  using util::Clock::WaitUntil;
  bool WaitUntil(util::CondVar* cv, util::Mutex* mu, TimePoint deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return waiters_.Wait(*this, cv, mu, deadline);
  }
  // Moves time on and wakes the timed waits now due (not with one of their
  // mutexes held).
  void Advance(std::chrono::nanoseconds d) {
    const int64_t now = now_ns_.fetch_add(d.count(), std::memory_order_acq_rel) + d.count();
    waiters_.WakeDue(TimePoint(std::chrono::nanoseconds(now)));
  }
  // Threads blocked in a timed wait on this clock.
  size_t Waiters() const { return waiters_.Count(); }

 private:
  std::atomic<int64_t> now_ns_{int64_t{3600} * 1'000'000'000};
  util::ManualWaiters waiters_;
};

// How long a test waits for one server call before calling it lost.
inline constexpr std::chrono::seconds kCallTimeout{30};

// Runs an asynchronous server call and waits for its Done (DeadlineExceeded
// if it does not come within `timeout`).
template <class Resp>
absl::StatusOr<Resp> Call(const std::function<void(Done<Resp>)>& fn,
                          std::chrono::milliseconds timeout = kCallTimeout) {
  auto p = std::make_shared<std::promise<absl::StatusOr<Resp>>>();
  auto f = p->get_future();
  fn([p](absl::StatusOr<Resp> r) { p->set_value(std::move(r)); });
  if (f.wait_for(timeout) != std::future_status::ready) {
    return absl::DeadlineExceededError("test call did not complete");
  }
  return f.get();
}

// Polls `cond` until it holds or `timeout` passes; returns its last value.
inline bool PollUntil(const std::function<bool()>& cond,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  return cond();
}

// A fixture with a fresh temp dir (under $TMPDIR) holding one open LMDB
// backend `be_` ("<dir_>/db"), for the tests of the types that keep their
// state in backend buckets (AlarmStore, Membership). OpenBackend opens
// another one in the same dir (a reopen after `be_.reset()`).
class TempBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* t = getenv("TMPDIR");
    std::string tmpl = std::string(t != nullptr && *t != '\0' ? t : "/tmp") + "/backend-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    be_ = OpenBackend("db");
  }
  void TearDown() override {
    be_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<storage::Backend> OpenBackend(const std::string& name,
                                                storage::BackendOptions opts = {}) {
    auto be = storage::Backend::Open(dir_ + "/" + name, opts);
    EXPECT_TRUE(be.ok()) << be.status();
    return be.ok() ? std::move(*be) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<storage::Backend> be_;
};

// A fresh data dir under /tmp per test and at most one member in it.
class SingleServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cppetcd_server_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    if (HasFailure()) {  // the member's last 80 log lines
      auto lines = log_.Lines();
      const size_t from = lines.size() > 80 ? lines.size() - 80 : 0;
      for (size_t i = from; i < lines.size(); ++i) std::fprintf(stderr, "%s\n", lines[i].c_str());
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Fast timers, the cheapest bcrypt cost, the log captured in log_.
  ServerConfig Config() {
    ServerConfig c;
    c.name = "default";
    c.data_dir = dir_ + "/data";
    c.heartbeat_interval = std::chrono::milliseconds(10);
    c.election_timeout = std::chrono::milliseconds(50);
    c.request_timeout = std::chrono::seconds(5);
    c.advertise_client_urls = {"http://127.0.0.1:2379"};
    c.bcrypt_cost = 4;
    c.logger = util::Logger("etcdserver", log_.sink);
    return c;
  }

  // Stops the member if one runs, then creates, starts and waits for a
  // leader (10 s).
  void StartServer(ServerConfig c) {
    server_.reset();
    auto s = EtcdServer::Create(std::move(c));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(server_->WaitReady(std::chrono::seconds(10)));
  }
  void StartServer() { StartServer(Config()); }

  util::CapturedLog log_ = util::NewCapturedLog();
  std::string dir_;
  std::unique_ptr<EtcdServer> server_;
};

}  // namespace cppetcd::server::test_util

#endif  // CPPETCD_TESTS_UNIT_SERVER_SERVER_TEST_UTIL_H_
