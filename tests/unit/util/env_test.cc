#include "cppetcd/util/env.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "cppetcd/util/fault_injection_env.h"
#include "gtest/gtest.h"

namespace cppetcd::util {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "envtestXXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() { (void)Env::Default()->RemoveAll(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(Env* env, const std::string& path, const std::string& data, bool sync) {
  auto f = env->NewWritableFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->Append(data).ok());
  if (sync) {
    ASSERT_TRUE((*f)->Sync().ok());
  }
  ASSERT_TRUE((*f)->Close().ok());
}

TEST(EnvTest, WriteReadListRenameRemove) {
  TempDir dir;
  Env* env = Env::Default();
  const std::string a = JoinPath(dir.path(), "a"), b = JoinPath(dir.path(), "b");
  WriteFile(env, a, "hello", true);
  ASSERT_TRUE(env->FileExists(a));
  EXPECT_EQ(*env->FileSize(a), 5u);
  EXPECT_EQ(*env->ReadFileToString(a), "hello");
  {
    auto f = env->NewAppendableFile(a);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ((*f)->Size(), 5u);
    ASSERT_TRUE((*f)->Append(" world").ok());
  }
  EXPECT_EQ(*env->ReadFileToString(a), "hello world");
  ASSERT_TRUE(env->RenameFile(a, b).ok());
  EXPECT_FALSE(env->FileExists(a));
  EXPECT_EQ(*env->GetChildren(dir.path()), std::vector<std::string>{"b"});
  ASSERT_TRUE(env->Truncate(b, 4).ok());
  EXPECT_EQ(*env->ReadFileToString(b), "hell");
  ASSERT_TRUE(env->SyncDir(dir.path()).ok());
  ASSERT_TRUE(env->RemoveFile(b).ok());
  EXPECT_TRUE(absl::IsNotFound(env->RemoveFile(b)));
  EXPECT_TRUE(absl::IsNotFound(env->ReadFileToString(b).status()));
}

TEST(EnvTest, PreallocateKeepsPositionAndZeroFills) {
  TempDir dir;
  Env* env = Env::Default();
  const std::string p = JoinPath(dir.path(), "seg");
  auto f = env->NewWritableFile(p);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("abc").ok());
  ASSERT_TRUE((*f)->Preallocate(4096).ok());
  EXPECT_EQ((*f)->Size(), 3u);
  ASSERT_TRUE((*f)->Append("def").ok());
  std::string content = *env->ReadFileToString(p);
  ASSERT_EQ(content.size(), 4096u);
  EXPECT_EQ(content.substr(0, 6), "abcdef");
  EXPECT_EQ(content.find_first_not_of('\0', 6), std::string::npos);
  ASSERT_TRUE((*f)->Truncate(4).ok());
  EXPECT_EQ((*f)->Size(), 4u);
  EXPECT_EQ(*env->FileSize(p), 4u);
}

TEST(EnvTest, CreateDirAllAndRemoveAll) {
  TempDir dir;
  Env* env = Env::Default();
  const std::string deep = JoinPath(dir.path(), "x/y/z");
  ASSERT_TRUE(env->CreateDirAll(deep).ok());
  ASSERT_TRUE(env->CreateDirAll(deep).ok());
  EXPECT_TRUE(env->IsDirectory(deep));
  EXPECT_TRUE(absl::IsAlreadyExists(env->CreateDir(deep)));
  WriteFile(env, JoinPath(deep, "f"), "1", false);
  // A symlink to a directory is removed, not followed.
  const std::string keep = JoinPath(dir.path(), "keep");
  ASSERT_TRUE(env->CreateDir(keep).ok());
  WriteFile(env, JoinPath(keep, "f"), "1", false);
  ASSERT_EQ(::symlink(keep.c_str(), JoinPath(deep, "link").c_str()), 0);
  ASSERT_TRUE(env->RemoveAll(JoinPath(dir.path(), "x")).ok());
  EXPECT_FALSE(env->FileExists(JoinPath(dir.path(), "x")));
  EXPECT_TRUE(env->FileExists(JoinPath(keep, "f")));
  EXPECT_TRUE(env->RemoveAll(JoinPath(dir.path(), "missing")).ok());
}

TEST(EnvTest, LockIsExclusive) {
  TempDir dir;
  Env* env = Env::Default();
  auto l1 = env->LockFile(dir.path());  // a directory
  ASSERT_TRUE(l1.ok()) << l1.status();
  auto l2 = env->LockFile(dir.path());
  EXPECT_TRUE(absl::IsUnavailable(l2.status())) << l2.status();
  ASSERT_TRUE(env->UnlockFile(*std::move(l1)).ok());
  auto l3 = env->LockFile(dir.path());
  EXPECT_TRUE(l3.ok());
  auto f1 = env->LockFile(JoinPath(dir.path(), "LOCK"));  // a file, created
  ASSERT_TRUE(f1.ok());
  EXPECT_FALSE(env->LockFile(JoinPath(dir.path(), "LOCK")).ok());
}

TEST(EnvTest, FreeSpaceBytes) {
  TempDir dir;
  auto free = Env::Default()->FreeSpaceBytes(dir.path());
  ASSERT_TRUE(free.ok()) << free.status();
  EXPECT_GT(*free, 0u);
  // Writing a file takes its bytes from the free space (other writers on
  // the machine make this approximate: allow them 64 MiB).
  const std::string big(8 << 20, 'x');
  {
    auto f = Env::Default()->NewWritableFile(JoinPath(dir.path(), "big"));
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(big).ok());
    ASSERT_TRUE((*f)->Sync().ok());
  }
  auto after = Env::Default()->FreeSpaceBytes(dir.path());
  ASSERT_TRUE(after.ok());
  EXPECT_LT(*after, *free + (64u << 20) - big.size());
  EXPECT_TRUE(absl::IsNotFound(Env::Default()->FreeSpaceBytes(JoinPath(dir.path(), "none")).status()));

  FaultInjectionEnv fenv(Env::Default());
  fenv.SetFreeSpaceBytes(4096);
  EXPECT_EQ(*fenv.FreeSpaceBytes(dir.path()), 4096u);
  fenv.SetFreeSpaceBytes(std::nullopt);
  auto real = fenv.FreeSpaceBytes(dir.path());
  ASSERT_TRUE(real.ok());
  EXPECT_GT(*real, 4096u);
}

TEST(EnvTest, WriteFileAtomically) {
  TempDir dir;
  Env* env = Env::Default();
  const std::string p = JoinPath(dir.path(), "state");
  ASSERT_TRUE(WriteFileAtomically(env, p, "v1").ok());
  ASSERT_TRUE(WriteFileAtomically(env, p, "v2").ok());
  EXPECT_EQ(*env->ReadFileToString(p), "v2");
  EXPECT_EQ(*env->GetChildren(dir.path()), std::vector<std::string>{"state"});
}

TEST(EnvTest, PathHelpers) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(DirName("a/b/c"), "a/b");
  EXPECT_EQ(DirName("c"), ".");
  EXPECT_EQ(DirName("/c"), "/");
}

TEST(FaultInjectionEnvTest, InjectedWriteAndSyncErrors) {
  TempDir dir;
  FaultInjectionEnv env(Env::Default());
  auto f = env.NewWritableFile(JoinPath(dir.path(), "f"));
  ASSERT_TRUE(f.ok());
  struct Case {
    int error_number;
    absl::StatusCode code;
  };
  for (const Case& c : {Case{EIO, absl::StatusCode::kInternal}, Case{ENOSPC, absl::StatusCode::kResourceExhausted}}) {
    env.FailWrites(1, c.error_number);
    EXPECT_EQ((*f)->Append("x").code(), c.code);
    EXPECT_TRUE((*f)->Append("x").ok());
    env.FailSyncs(1, c.error_number);
    EXPECT_EQ((*f)->Sync().code(), c.code);
    EXPECT_TRUE((*f)->Sync().ok());
  }
  env.ShortWriteNext(2);
  EXPECT_EQ((*f)->Append("abcdef").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(*env.ReadFileToString(JoinPath(dir.path(), "f")), "xxab");
}

TEST(FaultInjectionEnvTest, DropUnsyncedData) {
  TempDir dir;
  FaultInjectionEnv env(Env::Default());
  const std::string synced = JoinPath(dir.path(), "synced");
  const std::string fresh = JoinPath(dir.path(), "fresh");
  auto f = env.NewWritableFile(synced);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Preallocate(64).ok());
  ASSERT_TRUE((*f)->Append("durable").ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE(env.SyncDir(dir.path()).ok());
  ASSERT_TRUE((*f)->Append("-lost").ok());
  WriteFile(&env, fresh, "never in a synced dir", true);

  ASSERT_TRUE(env.DropUnsyncedData().ok());
  EXPECT_FALSE(env.FileExists(fresh));
  std::string content = *env.ReadFileToString(synced);
  ASSERT_EQ(content.size(), 64u);  // synced preallocation survives as zeros
  EXPECT_EQ(content.substr(0, 7), "durable");
  EXPECT_EQ(content.find_first_not_of('\0', 7), std::string::npos);
}

TEST(FaultInjectionEnvTest, RenamedDirectoryKeepsTracking) {
  TempDir dir;
  FaultInjectionEnv env(Env::Default());
  const std::string tmp = JoinPath(dir.path(), "d.tmp"), final_dir = JoinPath(dir.path(), "d");
  ASSERT_TRUE(env.CreateDir(tmp).ok());
  auto f = env.NewWritableFile(JoinPath(tmp, "f"));
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("one").ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE(env.SyncDir(tmp).ok());
  ASSERT_TRUE(env.RenameFile(tmp, final_dir).ok());
  ASSERT_TRUE((*f)->Append("two").ok());
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  EXPECT_EQ(*env.ReadFileToString(JoinPath(final_dir, "f")), "one");
}

TEST(EnvTest, SymlinkIsCreatedRenamedAndRecognised) {
  TempDir dir;
  Env* env = Env::Default();
  const std::string target = JoinPath(dir.path(), "gen1");
  ASSERT_TRUE(env->CreateDir(target).ok());
  WriteFile(env, JoinPath(target, "f"), "x", /*sync=*/false);
  const std::string tmp = JoinPath(dir.path(), "link.tmp"), link = JoinPath(dir.path(), "link");
  ASSERT_TRUE(env->CreateSymlink("gen1", tmp).ok());  // relative to the link's directory
  EXPECT_TRUE(absl::IsAlreadyExists(env->CreateSymlink("gen1", tmp)));
  ASSERT_TRUE(env->RenameFile(tmp, link).ok());
  EXPECT_TRUE(env->IsSymlink(link));
  EXPECT_TRUE(env->IsDirectory(link));  // followed
  EXPECT_FALSE(env->IsSymlink(target));
  EXPECT_EQ(*env->ReadFileToString(JoinPath(link, "f")), "x");
  // RemoveAll on the link removes the link, not what it points at.
  ASSERT_TRUE(env->RemoveAll(link).ok());
  EXPECT_FALSE(env->FileExists(link));
  EXPECT_TRUE(env->FileExists(JoinPath(target, "f")));
}

TEST(EnvTest, ReadFileBoundedStopsPastTheBound) {
  TempDir dir;
  Env* env = Env::Default();
  const std::string path = JoinPath(dir.path(), "f");
  WriteFile(env, path, std::string(100, 'a'), /*sync=*/false);
  auto exact = ReadFileBounded(env, path, 100);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->size(), 100u);
  auto over = ReadFileBounded(env, path, 99);
  EXPECT_TRUE(absl::IsFailedPrecondition(over.status())) << over.status();
  EXPECT_NE(over.status().message().find("file is larger than 99 bytes"), std::string::npos);
  // A file that never ends.
  auto endless = ReadFileBounded(env, "/dev/zero", 3 << 20);
  EXPECT_TRUE(absl::IsFailedPrecondition(endless.status())) << endless.status();
  EXPECT_TRUE(absl::IsNotFound(ReadFileBounded(env, JoinPath(dir.path(), "nope"), 10).status()));
}

TEST(FaultInjectionEnvTest, FailCallsByKindAndPath) {
  TempDir dir;
  FaultInjectionEnv env(Env::Default());
  const std::string a = JoinPath(dir.path(), "a"), b = JoinPath(dir.path(), "b");
  WriteFile(&env, a, "data", /*sync=*/true);

  // Only calls whose path matches count; the counter runs out.
  env.FailCalls(FaultInjectionEnv::Call::kRename, 1, EIO, "/b");
  ASSERT_TRUE(env.RenameFile(a, JoinPath(dir.path(), "c")).ok());
  ASSERT_TRUE(env.RenameFile(JoinPath(dir.path(), "c"), a).ok());
  absl::Status s = env.RenameFile(a, b);
  EXPECT_TRUE(absl::IsInternal(s)) << s;
  EXPECT_NE(s.message().find("rename (injected)"), std::string::npos) << s;
  EXPECT_TRUE(env.FileExists(a));  // nothing done
  EXPECT_FALSE(env.FileExists(b));
  ASSERT_TRUE(env.RenameFile(a, b).ok());

  env.FailCalls(FaultInjectionEnv::Call::kOpen, 1, ENOSPC);
  EXPECT_TRUE(absl::IsResourceExhausted(env.NewWritableFile(a).status()));
  env.FailCalls(FaultInjectionEnv::Call::kRead, 1, EIO);
  EXPECT_TRUE(absl::IsInternal(env.ReadFileToString(b).status()));
  EXPECT_EQ(*env.ReadFileToString(b), "data");
  env.FailCalls(FaultInjectionEnv::Call::kRemove, 1, EACCES);
  EXPECT_TRUE(absl::IsPermissionDenied(env.RemoveFile(b)));
  EXPECT_TRUE(env.FileExists(b));
  env.FailCalls(FaultInjectionEnv::Call::kSyncDir, 1, EIO);
  EXPECT_FALSE(env.SyncDir(dir.path()).ok());
  EXPECT_TRUE(env.SyncDir(dir.path()).ok());
  env.FailCalls(FaultInjectionEnv::Call::kCreateDir, 1, ENOSPC);
  EXPECT_FALSE(env.CreateDir(JoinPath(dir.path(), "d")).ok());
  EXPECT_FALSE(env.IsDirectory(JoinPath(dir.path(), "d")));
  env.FailCalls(FaultInjectionEnv::Call::kSymlink, 1, EIO);
  EXPECT_FALSE(env.CreateSymlink("b", JoinPath(dir.path(), "l")).ok());
  EXPECT_FALSE(env.IsSymlink(JoinPath(dir.path(), "l")));
  ASSERT_TRUE(env.CreateSymlink("b", JoinPath(dir.path(), "l")).ok());
  EXPECT_TRUE(env.IsSymlink(JoinPath(dir.path(), "l")));
  env.FailCalls(FaultInjectionEnv::Call::kFileSize, 1, EIO);
  EXPECT_FALSE(env.FileSize(b).ok());
  EXPECT_EQ(*env.FileSize(b), 4u);
}

TEST(EnvTest, RandomRWFileWritesAndReadsAtOffsets) {
  TempDir dir;
  FaultInjectionEnv env(Env::Default());
  const std::string path = JoinPath(dir.path(), "rw");
  auto f = env.NewRandomRWFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->Write(4, "tail").ok());
  ASSERT_TRUE((*f)->Write(0, "head").ok());
  std::string got;
  ASSERT_TRUE((*f)->Read(2, 100, &got).ok());
  EXPECT_EQ(got, "adtail");  // short only at the end
  env.FailWrites(1, ENOSPC);
  EXPECT_TRUE(absl::IsResourceExhausted((*f)->Write(8, "more")));
  env.ShortWriteNext(2);
  EXPECT_FALSE((*f)->Write(8, "more").ok());
  env.FailSyncs(1, EIO);
  EXPECT_FALSE((*f)->Sync().ok());
  EXPECT_TRUE((*f)->Sync().ok());
  env.FailCalls(FaultInjectionEnv::Call::kRead, 1, EIO);
  EXPECT_FALSE((*f)->Read(0, 4, &got).ok());
  ASSERT_TRUE((*f)->Read(0, 100, &got).ok());
  EXPECT_EQ(got, "headtailmo");  // the short write kept 2 bytes
  ASSERT_TRUE((*f)->Close().ok());
  EXPECT_FALSE((*f)->Write(0, "x").ok());
}

}  // namespace
}  // namespace cppetcd::util
