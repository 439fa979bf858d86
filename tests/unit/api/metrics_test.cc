#include "cppetcd/api/metrics.h"

#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cppetcd/util/histogram.h"

namespace cppetcd::api {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(FormatValueTest, MatchesGoPrometheusClient) {
  // Values as etcd 3.4's /metrics prints them (strconv 'g', shortest).
  EXPECT_EQ(ExpositionWriter::FormatValue(0), "0");
  EXPECT_EQ(ExpositionWriter::FormatValue(1), "1");
  EXPECT_EQ(ExpositionWriter::FormatValue(24576), "24576");
  EXPECT_EQ(ExpositionWriter::FormatValue(2147483648.0), "2.147483648e+09");
  EXPECT_EQ(ExpositionWriter::FormatValue(28856320), "2.885632e+07");
  EXPECT_EQ(ExpositionWriter::FormatValue(1795280962.67), "1.79528096267e+09");
  EXPECT_EQ(ExpositionWriter::FormatValue(0.001), "0.001");
  EXPECT_EQ(ExpositionWriter::FormatValue(0.0001), "0.0001");
  EXPECT_EQ(ExpositionWriter::FormatValue(0.00001), "1e-05");
  EXPECT_EQ(ExpositionWriter::FormatValue(8.192), "8.192");
  EXPECT_EQ(ExpositionWriter::FormatValue(0.03407475100000002), "0.03407475100000002");
  EXPECT_EQ(ExpositionWriter::FormatValue(999999), "999999");
  EXPECT_EQ(ExpositionWriter::FormatValue(1000000), "1e+06");
}

TEST(ExpositionWriterTest, HelpAndTypeOncePerFamilyAndEscapedLabels) {
  ExpositionWriter w;
  w.Gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", 1);
  w.Counter("c_total", "help", 3, {{"a", "x\"y\\z\n"}, {"b", "2"}});
  w.Counter("c_total", "help", 4, {{"a", "q"}, {"b", "3"}});
  EXPECT_EQ(w.Text(),
            "# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is "
            "not.\n"
            "# TYPE etcd_server_has_leader gauge\n"
            "etcd_server_has_leader 1\n"
            "# HELP c_total help\n"
            "# TYPE c_total counter\n"
            "c_total{a=\"x\\\"y\\\\z\\n\",b=\"2\"} 3\n"
            "c_total{a=\"q\",b=\"3\"} 4\n");
}

TEST(ExpositionWriterTest, HistogramAsEtcdPrintsIt) {
  util::Histogram h(util::Histogram::ExponentialBounds(0.001, 2, 3));
  h.Observe(0.0005);
  h.Observe(0.0015);
  h.Observe(10);
  ExpositionWriter w;
  w.Histogram("etcd_disk_wal_fsync_duration_seconds",
              "The latency distributions of fsync called by WAL.", h.Snapshot());
  EXPECT_EQ(w.Text(),
            "# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync "
            "called by WAL.\n"
            "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n"
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1\n"
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 2\n"
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 2\n"
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3\n"
            "etcd_disk_wal_fsync_duration_seconds_sum 10.002\n"
            "etcd_disk_wal_fsync_duration_seconds_count 3\n");
}

TEST(HistogramTest, EtcdBucketsAndBoundaries) {
  const auto bounds = util::Histogram::ExponentialBounds(0.001, 2, 14);
  ASSERT_EQ(bounds.size(), 14u);
  EXPECT_DOUBLE_EQ(bounds.back(), 8.192);
  util::Histogram h(bounds);
  h.Observe(0.001);  // on the bound: counted in that bucket (le)
  h.Observe(0.0010001);
  const util::HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.cumulative_counts[0], 1u);
  EXPECT_EQ(s.cumulative_counts[1], 2u);
  EXPECT_EQ(s.count, 2u);
}

TEST(HistogramTest, ConcurrentObservationsAllCounted) {
  util::Histogram h(util::Histogram::ExponentialBounds(1, 2, 4));
  constexpr int kThreads = 4, kEach = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < kEach; ++i) h.Observe(t);
    });
  }
  for (auto& t : threads) t.join();
  const util::HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_DOUBLE_EQ(s.sum, kEach * (0 + 1 + 2 + 3));
  EXPECT_EQ(s.cumulative_counts[0], static_cast<uint64_t>(2 * kEach));  // 0 and 1 are <= 1
}

TEST(GrpcMetricsTest, CountsAsGoGrpcPrometheus) {
  GrpcMetrics m;
  m.OnStarted("/etcdserverpb.KV/Range", "unary");
  m.OnReceived("/etcdserverpb.KV/Range", "unary");
  m.OnSent("/etcdserverpb.KV/Range", "unary");
  m.OnHandled("/etcdserverpb.KV/Range", "unary", 0);
  m.OnStarted("/etcdserverpb.KV/Range", "unary");
  m.OnHandled("/etcdserverpb.KV/Range", "unary", 11);
  ExpositionWriter w;
  m.Collect(w);
  const std::string& t = w.Text();
  EXPECT_THAT(t, HasSubstr("grpc_server_started_total{grpc_method=\"Range\",grpc_service="
                           "\"etcdserverpb.KV\",grpc_type=\"unary\"} 2\n"));
  EXPECT_THAT(t, HasSubstr("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\","
                           "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"));
  EXPECT_THAT(t, HasSubstr("grpc_server_handled_total{grpc_code=\"OutOfRange\",grpc_method="
                           "\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"));
  EXPECT_THAT(t, HasSubstr("grpc_server_msg_received_total{grpc_method=\"Range\","
                           "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"));
  EXPECT_THAT(t, HasSubstr("# TYPE grpc_server_msg_sent_total counter\n"));
  EXPECT_EQ(GrpcMetrics::CodeName(1), "Canceled");
  EXPECT_EQ(GrpcMetrics::CodeName(16), "Unauthenticated");
}

TEST(GrpcMetricsTest, FamiliesDeclaredBeforeAnyCall) {
  GrpcMetrics m;
  ExpositionWriter w;
  m.Collect(w);
  EXPECT_THAT(w.Text(), HasSubstr("# TYPE grpc_server_handled_total counter\n"));
  EXPECT_THAT(w.Text(), HasSubstr("# TYPE grpc_server_started_total counter\n"));
}

TEST(PeerRoundTripTimesTest, LabelIsHexMemberIdAndEmptyFamilyIsDeclared) {
  ExpositionWriter empty;
  WritePeerRoundTripTimes(empty, {});
  EXPECT_THAT(empty.Text(),
              HasSubstr("# TYPE etcd_network_peer_round_trip_time_seconds histogram\n"));
  util::Histogram h(util::Histogram::ExponentialBounds(0.0001, 2, 16));
  h.Observe(0.0003);
  ExpositionWriter w;
  WritePeerRoundTripTimes(w, {{0x8e9e05c52164694dULL, h.Snapshot()}});
  EXPECT_THAT(w.Text(), HasSubstr("etcd_network_peer_round_trip_time_seconds_bucket{To="
                                  "\"8e9e05c52164694d\",le=\"0.0004\"} 1\n"));
}

TEST(MetricsRegistryTest, RendersCollectorsInOrder) {
  MetricsRegistry r;
  r.Add([](ExpositionWriter& w) { w.Gauge("a", "h", 1); });
  r.Add([](ExpositionWriter& w) { w.Gauge("b", "h", 2); });
  r.Add([](ExpositionWriter& w) { CollectProcessMetrics(w); });
  const std::string t = r.Render();
  EXPECT_LT(t.find("\na 1\n"), t.find("\nb 2\n"));
  EXPECT_THAT(t, HasSubstr("process_open_fds "));
  EXPECT_THAT(t, HasSubstr("process_resident_memory_bytes "));
}

}  // namespace
}  // namespace cppetcd::api

namespace cppetcd::api {
namespace {

TEST(GrpcMetricsTest, HandlingHistogramOnlyWhenExtensive) {
  GrpcMetrics basic;
  basic.OnStarted("/etcdserverpb.KV/Put", "unary");
  basic.OnHandled("/etcdserverpb.KV/Put", "unary", 0);
  ExpositionWriter wb;
  basic.Collect(wb);
  EXPECT_THAT(wb.Text(), ::testing::Not(::testing::HasSubstr("grpc_server_handling_seconds")));
  GrpcMetrics extensive(true);
  extensive.OnStarted("/etcdserverpb.KV/Put", "unary");
  extensive.OnHandled("/etcdserverpb.KV/Put", "unary", 0);
  extensive.OnHandlingTime("/etcdserverpb.KV/Put", "unary", 0.02);
  ExpositionWriter we;
  extensive.Collect(we);
  EXPECT_THAT(we.Text(),
              ::testing::HasSubstr("grpc_server_handling_seconds_bucket{grpc_method=\"Put\","
                                   "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\","
                                   "le=\"0.025\"} 1\n"));
}

}  // namespace
}  // namespace cppetcd::api
