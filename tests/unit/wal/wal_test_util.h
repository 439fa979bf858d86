// Helpers shared by the WAL tests: temp directories, entries, file surgery.
#ifndef CPPETCD_TESTS_UNIT_WAL_WAL_TEST_UTIL_H_
#define CPPETCD_TESTS_UNIT_WAL_WAL_TEST_UTIL_H_

#include <stdlib.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cppetcd/util/env.h"
#include "gtest/gtest.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::wal::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "waltestXXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() { (void)util::Env::Default()->RemoveAll(path_); }
  const std::string& path() const { return path_; }
  std::string Sub(std::string_view name) const { return util::JoinPath(path_, name); }

 private:
  std::string path_;
};

inline raftpb::Entry Ent(uint64_t index, uint64_t term, std::string data = "") {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(data.empty() ? absl::StrCat("entry-", index, "-", term, "!") : data);
  return e;
}

// Entries [lo, hi] at `term`.
inline std::vector<raftpb::Entry> Ents(uint64_t lo, uint64_t hi, uint64_t term) {
  std::vector<raftpb::Entry> out;
  for (uint64_t i = lo; i <= hi; ++i) out.push_back(Ent(i, term));
  return out;
}

inline raftpb::HardState Hs(uint64_t term, uint64_t vote, uint64_t commit) {
  raftpb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

// "index/term" of each entry, for readable comparisons.
inline std::vector<std::string> Ids(const std::vector<raftpb::Entry>& ents) {
  std::vector<std::string> out;
  for (const auto& e : ents) out.push_back(absl::StrCat(e.index(), "/", e.term()));
  return out;
}

inline std::string ReadFile(const std::string& path) { return *util::Env::Default()->ReadFileToString(path); }

inline void WriteFile(const std::string& path, const std::string& data) {
  auto f = util::Env::Default()->NewWritableFile(path);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(data).ok());
}

// Copies the files of directory `src` into new directory `dst`.
inline void CopyDir(const std::string& src, const std::string& dst) {
  util::Env* env = util::Env::Default();
  ASSERT_TRUE(env->CreateDirAll(dst).ok());
  auto children = env->GetChildren(src);
  ASSERT_TRUE(children.ok());
  for (const std::string& c : *children) WriteFile(util::JoinPath(dst, c), ReadFile(util::JoinPath(src, c)));
}

}  // namespace cppetcd::wal::testing

#endif  // CPPETCD_TESTS_UNIT_WAL_WAL_TEST_UTIL_H_
