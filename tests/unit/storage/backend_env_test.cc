// The backend's own file operations through util::Env (BackendOptions::env):
// failures injected with FaultInjectionEnv are reported as errors and leave
// the live database in use and intact.
#include <cerrno>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/fault_injection_env.h"
#include "gtest/gtest.h"

namespace cppetcd::storage {
namespace {

using util::FaultInjectionEnv;

class BackendEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "backend_env_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { util::Env::Default()->RemoveAll(dir_).IgnoreError(); }

  std::string File(const std::string& name) const { return util::JoinPath(dir_, name); }

  std::unique_ptr<Backend> Open(const std::string& path, util::Env* env) {
    BackendOptions o;
    o.map_size_bytes = 64 << 20;
    o.env = env;
    auto b = Backend::Open(path, std::move(o));
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(b).value() : nullptr;
  }

  // 2000 keys written, 9 in 10 deleted: defragmentation has work to do.
  static void Fill(Backend* b) {
    for (int start = 0; start < 2000; start += 500) {
      auto w = b->BeginWrite();
      ASSERT_TRUE(w.ok());
      for (int i = start; i < start + 500; ++i) {
        ASSERT_TRUE((*w)->Put(kKeyBucket, absl::StrCat("k", 10000 + i), std::string(900, 'v')).ok());
      }
      ASSERT_TRUE((*w)->Commit().ok());
    }
    auto w = b->BeginWrite();
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < 2000; ++i) {
      if (i % 10 != 0) {
        ASSERT_TRUE((*w)->Delete(kKeyBucket, absl::StrCat("k", 10000 + i)).ok());
      }
    }
    ASSERT_TRUE((*w)->Commit().ok());
  }

  static std::map<std::string, std::string> Contents(Backend* b) {
    std::map<std::string, std::string> out;
    auto r = b->BeginRead();
    EXPECT_TRUE(r.ok());
    EXPECT_TRUE((*r)->Scan(kKeyBucket, "", "", [&](std::string_view k, std::string_view v) {
                      out.emplace(k, v);
                      return true;
                    }).ok());
    return out;
  }

  static void Put(Backend* b, const std::string& k, const std::string& v) {
    auto w = b->BeginWrite();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Put(kKeyBucket, k, v).ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }

  std::string dir_;
  FaultInjectionEnv env_{util::Env::Default()};
};

// A defragmentation whose rename of the copy (or unlink of the old lock
// file, or removal of nothing else) fails: an error, the copy removed, the
// live database unchanged and writable; the next one succeeds; a reopen
// finds everything.
TEST_F(BackendEnvTest, FailedDefragmentationKeepsTheLiveBackend) {
  struct Case {
    const char* name;
    FaultInjectionEnv::Call call;
    int error_number;
    const char* path;
  };
  for (const Case& c : {Case{"rename", FaultInjectionEnv::Call::kRename, EIO, ".defrag"},
                        Case{"unlink lock", FaultInjectionEnv::Call::kRemove, EACCES, "-lock"}}) {
    SCOPED_TRACE(c.name);
    const std::string path = File(absl::StrCat("db-", c.error_number));
    auto b = Open(path, &env_);
    ASSERT_NE(b, nullptr);
    Fill(b.get());
    auto before = Contents(b.get());
    const int64_t size_before = b->SizeBytes();

    env_.FailCalls(c.call, 1, c.error_number, c.path);
    auto res = b->Defragment();
    ASSERT_FALSE(res.ok());
    EXPECT_NE(res.status().message().find("storage: defrag"), std::string::npos) << res.status();
    EXPECT_NE(res.status().message().find("(injected)"), std::string::npos) << res.status();
    EXPECT_FALSE(env_.FileExists(path + ".defrag"));
    EXPECT_EQ(b->SizeBytes(), size_before);
    EXPECT_EQ(Contents(b.get()), before);
    Put(b.get(), "after-failure", "1");
    before["after-failure"] = "1";

    auto again = b->Defragment();
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_LT(b->SizeBytes(), size_before);
    EXPECT_EQ(Contents(b.get()), before);
    b.reset();
    b = Open(path, &env_);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(Contents(b.get()), before);
  }
}

// A leftover defragmentation copy that cannot be removed fails Open (the
// database at the path is not touched).
TEST_F(BackendEnvTest, OpenReportsAFailedRemovalOfALeftoverCopy) {
  const std::string path = File("db");
  {
    auto b = Open(path, &env_);
    ASSERT_NE(b, nullptr);
    Put(b.get(), "k", "v");
  }
  auto leftover = env_.NewWritableFile(path + ".defrag");
  ASSERT_TRUE(leftover.ok());
  ASSERT_TRUE((*leftover)->Close().ok());
  env_.FailCalls(FaultInjectionEnv::Call::kRemove, 1, EIO, ".defrag");
  BackendOptions o;
  o.env = &env_;
  auto b = Backend::Open(path, o);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("unfinished defragmentation copy"), std::string::npos)
      << b.status();
  auto reopened = Open(path, &env_);  // the next attempt removes it
  ASSERT_NE(reopened, nullptr);
  EXPECT_FALSE(env_.FileExists(path + ".defrag"));
  EXPECT_EQ(Contents(reopened.get()), (std::map<std::string, std::string>{{"k", "v"}}));
}

// CopyTo(WritableFile*): a complete, openable copy; a failed or short write
// is the call's error (the copy is drained, nothing hangs).
TEST_F(BackendEnvTest, CopyToAWritableFile) {
  auto b = Open(File("db"), &env_);
  ASSERT_NE(b, nullptr);
  Fill(b.get());
  const auto expect = Contents(b.get());

  auto out = env_.NewWritableFile(File("copy"));
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(b->CopyTo(out->get()).ok());
  ASSERT_TRUE((*out)->Close().ok());
  {
    auto copy = Open(File("copy"), util::Env::Default());
    ASSERT_NE(copy, nullptr);
    EXPECT_EQ(Contents(copy.get()), expect);
  }

  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    auto f = env_.NewWritableFile(File("broken"));
    ASSERT_TRUE(f.ok());
    if (round == 0) {
      env_.FailWrites(1, ENOSPC);
    } else {
      env_.ShortWriteNext(100);
    }
    absl::Status s = b->CopyTo(f->get());
    EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
    EXPECT_NE(s.message().find("storage: copy"), std::string::npos) << s;
  }
  // The backend is unaffected.
  Put(b.get(), "x", "y");
  EXPECT_EQ(Contents(b.get()).size(), expect.size() + 1);
}

}  // namespace
}  // namespace cppetcd::storage
