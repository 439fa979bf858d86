// The lessor tests' common fixture: a fresh LMDB backend in a temporary
// directory, a manual clock, and helpers that read the lease bucket.
#ifndef CPPETCD_TESTS_UNIT_LEASE_LESSOR_FIXTURE_H_
#define CPPETCD_TESTS_UNIT_LEASE_LESSOR_FIXTURE_H_

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/clock.h"
#include "leasepb/lease.pb.h"

namespace cppetcd::lease::testing {

class LessorFixture : public ::testing::Test {
 protected:
  // Makes the directory and opens the backend; the test's SetUp then makes
  // its lessor.
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lessor_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    OpenBackend();
  }
  void TearDown() override {
    lessor_.reset();
    backend_.reset();
    std::filesystem::remove_all(dir_);
  }
  void OpenBackend() {
    storage::BackendOptions opts;
    opts.map_size_bytes = 64 << 20;
    auto b = storage::Backend::Open((std::filesystem::path(dir_) / "db").string(), opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }
  // Options with this fixture's clock and a minimum TTL of 1 s.
  LessorOptions BaseOptions() {
    LessorOptions opts;
    opts.min_ttl_seconds = 1;
    opts.clock = &clock_;
    return opts;
  }
  // The decoded records of the lease bucket, by key order (keys are the
  // 8-byte lease IDs).
  std::vector<leasepb::Lease> Records() {
    std::vector<leasepb::Lease> out;
    auto tx = backend_->BeginRead();
    EXPECT_TRUE(tx.ok());
    if (!tx.ok()) return out;
    EXPECT_TRUE((*tx)->Scan(storage::kLeaseBucket, "", "",
                            [&](std::string_view k, std::string_view v) {
                              leasepb::Lease l;
                              EXPECT_TRUE(l.ParseFromArray(v.data(), static_cast<int>(v.size())));
                              EXPECT_EQ(k.size(), 8u);
                              out.push_back(l);
                              return true;
                            })
                    .ok());
    return out;
  }

  std::string dir_;
  util::FakeClock clock_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<Lessor> lessor_;
};

}  // namespace cppetcd::lease::testing

#endif  // CPPETCD_TESTS_UNIT_LEASE_LESSOR_FIXTURE_H_
