// EtcdServer maintenance: online Defragment, Maintenance.Hash and the
// CORRUPT alarm (etcd applierV3Corrupt: writes refused, reads served).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/server/errors.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/util/fault_injection_env.h"
#include "cppetcd/util/log.h"
#include "tests/unit/server/server_test_util.h"
#include "gtest/gtest.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;
using test_util::Call;
using test_util::PollUntil;



class MaintenanceTest : public test_util::SingleServerTest {
 protected:
  absl::Status Put(const std::string& k, const std::string& v) {
    etcdserverpb::PutRequest req;
    req.set_key(k);
    req.set_value(v);
    return Call<etcdserverpb::PutResponse>([&](Done<etcdserverpb::PutResponse> d) {
             server_->Put(auth::kNoCredentials, req, std::move(d));
           })
        .status();
  }
  std::string Value(const std::string& k) {
    etcdserverpb::RangeRequest req;
    req.set_key(k);
    auto r = Call<etcdserverpb::RangeResponse>([&](Done<etcdserverpb::RangeResponse> d) {
      server_->Range(auth::kNoCredentials, req, std::move(d));
    });
    if (!r.ok() || r->kvs_size() != 1) return "<none>";
    return r->kvs(0).value();
  }
  absl::StatusOr<etcdserverpb::HashResponse> Hash() {
    return Call<etcdserverpb::HashResponse>(
        [&](Done<etcdserverpb::HashResponse> d) { server_->Hash({}, std::move(d)); });
  }
  absl::Status Defragment() {
    return Call<etcdserverpb::DefragmentResponse>([&](Done<etcdserverpb::DefragmentResponse> d) {
             server_->Defragment({}, std::move(d));
           })
        .status();
  }
  absl::StatusOr<etcdserverpb::AlarmResponse> Alarm(etcdserverpb::AlarmRequest::AlarmAction a,
                                                    uint64_t member, etcdserverpb::AlarmType t) {
    etcdserverpb::AlarmRequest req;
    req.set_action(a);
    req.set_memberid(member);
    req.set_alarm(t);
    return Call<etcdserverpb::AlarmResponse>([&](Done<etcdserverpb::AlarmResponse> d) {
      server_->Alarm(auth::kNoCredentials, req, std::move(d));
    });
  }

};

TEST_F(MaintenanceTest, DefragmentWhileWritingLosesNothingAndKeepsTheHash) {
  StartServer();
  const std::string big(2000, 'x');
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(Put(absl::StrCat("k", i % 30), big).ok());
  auto h1 = Hash();
  ASSERT_TRUE(h1.ok()) << h1.status();
  ASSERT_TRUE(Defragment().ok());
  auto h2 = Hash();
  ASSERT_TRUE(h2.ok());
  EXPECT_EQ(h1->hash(), h2->hash());
  EXPECT_EQ(h1->header().revision(), h2->header().revision());

  // Writes go on during two more defragmentations; none fails or is lost.
  std::atomic<bool> done{false};
  std::atomic<int> failed{0}, written{0};
  std::thread writer([&] {
    for (int i = 0; i < 2000 && !done.load(); ++i) {
      if (Put(absl::StrCat("w", i), absl::StrCat("v", i)).ok()) {
        ++written;
      } else {
        ++failed;
      }
    }
  });
  ASSERT_TRUE(PollUntil([&] { return written.load() > 10; }));
  EXPECT_TRUE(Defragment().ok());
  EXPECT_TRUE(Defragment().ok());
  done = true;
  writer.join();
  EXPECT_EQ(failed.load(), 0);
  for (int i = 0; i < written.load(); ++i) {
    ASSERT_EQ(Value(absl::StrCat("w", i)), absl::StrCat("v", i)) << i;
  }
  EXPECT_TRUE(PollUntil([&] {
    for (const auto& line : log_.Lines()) {
      if (line.find("finished defragmenting directory") != std::string::npos) return true;
    }
    return false;
  }));
  // The hash follows the data.
  auto h3 = Hash();
  ASSERT_TRUE(Put("one-more", "x").ok());
  EXPECT_NE(Hash()->hash(), h3->hash());
}

// A snapshot stream or a defragmentation copies the whole backend into the
// data dir. With less free space than that copy plus the WAL's headroom it
// is refused, and the member keeps serving writes (a copy that filled the
// disk would stop the member at its next WAL write).
TEST_F(MaintenanceTest, CopiesOfTheBackendNeedRoomOnDisk) {
  util::FaultInjectionEnv env(util::Env::Default());
  absl::Cleanup stop_first = [&] { server_.reset(); };  // the member uses env
  ServerConfig c = Config();
  c.env = &env;
  c.disk_headroom_bytes = 64u << 20;
  StartServer(std::move(c));
  const std::string big(4000, 'x');
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(Put(absl::StrCat("k", i), big).ok());  // ~2 MB

  const std::string path = dir_ + "/snapshot.db";
  const auto snapshot = [&] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    absl::Status st = server_->SnapshotBackend(fd);
    ::close(fd);
    return st;
  };
  // Room for the headroom only: both refused, with the sizes in the error.
  env.SetFreeSpaceBytes(64u << 20);
  absl::Status st = snapshot();
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_NE(st.message().find("not enough free disk space for a snapshot"), std::string::npos) << st;
  st = Defragment();
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_NE(st.message().find("a defragmentation"), std::string::npos) << st;
  ASSERT_TRUE(Put("after-refusal", "v").ok());
  EXPECT_EQ(Value("after-refusal"), "v");

  // The headroom plus a bit more than the data: both go ahead.
  env.SetFreeSpaceBytes((64u << 20) + (8u << 20));
  EXPECT_TRUE(snapshot().ok());
  EXPECT_TRUE(Defragment().ok());
  EXPECT_EQ(Value("k499"), big);
  EXPECT_GT(std::filesystem::file_size(path), 2'000'000u);
}

// The backend's defragmentation goes through the member's Env: a rename
// of the copy that fails is the call's error, the live backend keeps
// serving reads and writes, and the next defragmentation succeeds.
TEST_F(MaintenanceTest, FailedDefragmentationRenameKeepsTheLiveBackend) {
  util::FaultInjectionEnv env(util::Env::Default());
  absl::Cleanup stop_first = [&] { server_.reset(); };  // the member uses env
  ServerConfig c = Config();
  c.env = &env;
  StartServer(std::move(c));
  const std::string big(2000, 'x');
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(Put(absl::StrCat("k", i % 20), big).ok());

  env.FailCalls(util::FaultInjectionEnv::Call::kRename, 1, EIO, ".defrag");
  absl::Status st = Defragment();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("(injected)"), std::string::npos) << st;
  EXPECT_EQ(Value("k7"), big);
  ASSERT_TRUE(Put("after-failure", "v").ok());
  EXPECT_EQ(Value("after-failure"), "v");
  EXPECT_TRUE(Defragment().ok());
  EXPECT_EQ(Value("after-failure"), "v");
  EXPECT_EQ(Value("k19"), big);

  // The bbolt file of a client snapshot too: a failed create or read is the
  // snapshot's error; the member goes on.
  const std::string path = dir_ + "/snapshot.db";
  const auto snapshot = [&] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    absl::Status s = server_->SnapshotBackend(fd);
    ::close(fd);
    return s;
  };
  env.FailCalls(util::FaultInjectionEnv::Call::kOpen, 1, EIO, "db.snapshot-");
  st = snapshot();
  EXPECT_NE(st.message().find("(injected)"), std::string::npos) << st;
  env.FailCalls(util::FaultInjectionEnv::Call::kRead, 1, EIO, "db.snapshot-");
  st = snapshot();
  EXPECT_NE(st.message().find("(injected)"), std::string::npos) << st;
  ASSERT_TRUE(Put("after-snapshot-failure", "v").ok());
  ASSERT_TRUE(snapshot().ok());
  EXPECT_GT(std::filesystem::file_size(path), 20u * 2000u);
}

TEST_F(MaintenanceTest, CorruptAlarmRefusesWritesServesReadsAndPersists) {
  StartServer();
  ASSERT_TRUE(Put("a", "1").ok());
  auto raised = Alarm(etcdserverpb::AlarmRequest::ACTIVATE, 0, etcdserverpb::CORRUPT);
  ASSERT_TRUE(raised.ok()) << raised.status();
  absl::Status s = Put("b", "2");
  EXPECT_TRUE(IsCorrupt(s)) << s;
  EXPECT_EQ(s.message(), "etcdserver: corrupt cluster");
  EXPECT_EQ(Value("a"), "1");

  server_.reset();
  StartServer();
  EXPECT_TRUE(IsCorrupt(Put("b", "2")));
  auto listed = Alarm(etcdserverpb::AlarmRequest::GET, 0, etcdserverpb::NONE);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->alarms_size(), 1);
  EXPECT_EQ(listed->alarms(0).alarm(), etcdserverpb::CORRUPT);
  EXPECT_EQ(listed->alarms(0).memberid(), 0u);
  ASSERT_TRUE(Alarm(etcdserverpb::AlarmRequest::DEACTIVATE, 0, etcdserverpb::CORRUPT).ok());
  EXPECT_TRUE(Put("b", "2").ok());
  EXPECT_EQ(Value("b"), "2");
}

}  // namespace
}  // namespace cppetcd::server
