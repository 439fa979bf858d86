// watch-scale-bench: many watchers on many Watch streams while keys are
// written at a steady rate (issue 12 item 4, docs/benchmarks.md "Watch at
// scale"). Runs against any etcd v3 endpoint.
//
//   watch-scale-bench --endpoints 127.0.0.1:2379 --conns 10 --streams 1000
//       --watchers-per-stream 100 --keys 1000 --put-rate 100 --duration 20
//
// Watcher j of stream s watches key number (s * watchers-per-stream + j) %
// keys. Once every watcher is created, one writer puts random keys of that
// set at --put-rate per second for --duration seconds; each value carries
// the time it was sent, so each event's delivery latency is measured in this
// process (one clock). Every put's number of watchers is known, so the tool
// knows how many events must arrive, waits up to --drain seconds for them,
// and fails (exit 1) if any is missing or any put failed.
//
// Prints a "RESULT ..." line: watchers, set-up time, puts, put p99, events
// expected and received, event latency p50/p99/max (ms).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "flag_parser.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::vector<std::string> endpoints = {"127.0.0.1:2379"};
  int conns = 10;
  int streams = 1000;
  int watchers_per_stream = 100;
  int keys = 1000;
  int put_rate = 100;       // puts per second
  int duration_s = 20;      // seconds of writing
  int drain_s = 10;         // seconds to wait for the last events
  int setup_timeout_s = 120;
  int val_size = 64;        // bytes (at least the 20-digit timestamp)
};

[[noreturn]] void Usage(const char* msg) {
  std::fprintf(stderr,
               "error: %s\nusage: watch-scale-bench [--endpoints host:port[,...]] [--conns N] "
               "[--streams S] [--watchers-per-stream W] [--keys K] [--put-rate R] "
               "[--duration SECONDS] [--drain SECONDS] [--setup-timeout SECONDS] "
               "[--val-size BYTES]\n",
               msg);
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  constexpr int64_t kMax = 100'000'000;
  cppetcd::bench::FlagParser p(argc, argv, Usage);
  while (p.Next()) {
    const std::string& a = p.name();
    if (a == "--endpoints") {
      f.endpoints = cppetcd::bench::SplitList(p.Value(), ',');
    } else if (a == "--conns") {
      f.conns = static_cast<int>(p.Int(1, kMax));
    } else if (a == "--streams") {
      f.streams = static_cast<int>(p.Int(1, kMax));
    } else if (a == "--watchers-per-stream") {
      f.watchers_per_stream = static_cast<int>(p.Int(1, kMax));
    } else if (a == "--keys") {
      f.keys = static_cast<int>(p.Int(1, kMax));
    } else if (a == "--put-rate") {
      f.put_rate = static_cast<int>(p.Int(1, kMax));
    } else if (a == "--duration") {
      f.duration_s = static_cast<int>(p.Int(1, kMax));
    } else if (a == "--drain") {
      f.drain_s = static_cast<int>(p.Int(1, kMax));
    } else if (a == "--setup-timeout") {
      f.setup_timeout_s = static_cast<int>(p.Int(1, kMax));
    } else if (a == "--val-size") {
      f.val_size = std::max(24, static_cast<int>(p.Int(1, kMax)));
    } else {
      Usage(("unknown argument " + a).c_str());
    }
  }
  return f;
}

std::string KeyName(int n) { return "/watch-scale/" + std::to_string(n); }

// Nanoseconds since `epoch` as the value's first 20 characters.
std::string StampedValue(Clock::time_point epoch, size_t size) {
  const long long ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - epoch).count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020lld", ns);
  std::string v(buf);
  v.resize(size, 'x');
  return v;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t idx = std::clamp<size_t>(
      static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size()))), 1, v.size()) - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(idx), v.end());
  return v[idx];
}

// Shared progress of all streams.
struct Totals {
  std::atomic<int64_t> created{0};
  std::atomic<int64_t> events{0};
  std::atomic<int64_t> stream_errors{0};
};

// One Watch stream: writes its create requests one after another, then
// reads until cancelled, recording each event's latency.
class WatchStream : public grpc::ClientBidiReactor<etcdserverpb::WatchRequest,
                                                   etcdserverpb::WatchResponse> {
 public:
  WatchStream(etcdserverpb::Watch::Stub* stub, std::vector<int> keys, Clock::time_point epoch,
              Totals* totals)
      : keys_(std::move(keys)), epoch_(epoch), totals_(totals) {
    stub->async()->Watch(&ctx_, this);
    StartRead(&resp_);
    WriteNext();
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return;  // the stream has failed: OnDone reports it
    WriteNext();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (resp_.created()) totals_->created.fetch_add(1, std::memory_order_relaxed);
    if (resp_.canceled() && !resp_.created()) {
      totals_->stream_errors.fetch_add(1, std::memory_order_relaxed);
    }
    const auto now = Clock::now();
    for (const auto& ev : resp_.events()) {
      const std::string& v = ev.kv().value();
      if (v.size() >= 20) {
        const long long sent_ns = std::strtoll(v.substr(0, 20).c_str(), nullptr, 10);
        const double lat_ms =
            (std::chrono::duration<double, std::milli>(now - epoch_).count()) - sent_ns / 1e6;
        latencies_ms_.push_back(lat_ms);
      }
      totals_->events.fetch_add(1, std::memory_order_relaxed);
    }
    StartRead(&resp_);
  }

  void OnDone(const grpc::Status& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    if (!s.ok() && !cancelled_) {
      totals_->stream_errors.fetch_add(1, std::memory_order_relaxed);
      std::fprintf(stderr, "watch stream ended: %s\n", s.error_message().c_str());
    }
    cv_.notify_all();
  }

  void Cancel() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    ctx_.TryCancel();
  }
  void WaitDone() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }
  // After WaitDone only.
  std::vector<double>& latencies_ms() { return latencies_ms_; }

 private:
  void WriteNext() {
    if (next_ >= keys_.size()) return;
    req_.Clear();
    req_.mutable_create_request()->set_key(KeyName(keys_[next_++]));
    StartWrite(&req_);
  }

  grpc::ClientContext ctx_;
  etcdserverpb::WatchRequest req_;
  etcdserverpb::WatchResponse resp_;
  std::vector<int> keys_;
  size_t next_ = 0;
  const Clock::time_point epoch_;
  Totals* const totals_;
  std::vector<double> latencies_ms_;  // reactor callbacks of one stream are serialised
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool cancelled_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const Flags f = ParseFlags(argc, argv);
  const Clock::time_point epoch = Clock::now();

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<etcdserverpb::Watch::Stub>> stubs;
  for (int i = 0; i < f.conns; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("cppetcd.bench.conn", i);  // a distinct arg: a distinct connection
    auto ch = grpc::CreateCustomChannel(f.endpoints[static_cast<size_t>(i) % f.endpoints.size()],
                                        grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::fprintf(stderr, "error: cannot connect to %s\n", f.endpoints[0].c_str());
      return 1;
    }
    stubs.push_back(etcdserverpb::Watch::NewStub(ch));
    channels.push_back(std::move(ch));
  }

  // Watchers per key, to know how many events each put must produce.
  std::vector<int64_t> watchers_on(static_cast<size_t>(f.keys), 0);
  Totals totals;
  std::vector<std::unique_ptr<WatchStream>> streams;
  const int64_t want_watchers = static_cast<int64_t>(f.streams) * f.watchers_per_stream;
  const auto setup_start = Clock::now();
  for (int s = 0; s < f.streams; ++s) {
    std::vector<int> keys;
    for (int j = 0; j < f.watchers_per_stream; ++j) {
      const int k = static_cast<int>((static_cast<int64_t>(s) * f.watchers_per_stream + j) % f.keys);
      keys.push_back(k);
      ++watchers_on[static_cast<size_t>(k)];
    }
    streams.push_back(std::make_unique<WatchStream>(
        stubs[static_cast<size_t>(s) % stubs.size()].get(), std::move(keys), epoch, &totals));
  }
  const auto setup_deadline = setup_start + std::chrono::seconds(f.setup_timeout_s);
  while (totals.created.load() < want_watchers && Clock::now() < setup_deadline &&
         totals.stream_errors.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double setup_s = std::chrono::duration<double>(Clock::now() - setup_start).count();
  if (totals.created.load() < want_watchers) {
    std::fprintf(stderr, "error: %lld of %lld watchers created after %.1f s (%lld stream errors)\n",
                 static_cast<long long>(totals.created.load()),
                 static_cast<long long>(want_watchers), setup_s,
                 static_cast<long long>(totals.stream_errors.load()));
    for (auto& st : streams) st->Cancel();
    for (auto& st : streams) st->WaitDone();
    return 1;
  }
  std::printf("%lld watchers on %d streams created in %.2f s (%.0f watchers/s)\n",
              static_cast<long long>(want_watchers), f.streams, setup_s,
              static_cast<double>(want_watchers) / std::max(setup_s, 1e-9));
  std::fflush(stdout);  // watch_scale.sh samples the server once this line is out

  // The writer: one put at a time, paced to --put-rate.
  auto kv = etcdserverpb::KV::NewStub(channels[0]);
  std::mt19937_64 rng(20261207);
  std::vector<double> put_ms;
  int64_t expected_events = 0;
  int64_t put_errors = 0;
  const int64_t total_puts = static_cast<int64_t>(f.put_rate) * f.duration_s;
  const auto write_start = Clock::now();
  const auto interval = std::chrono::nanoseconds(1000000000LL / f.put_rate);
  for (int64_t i = 0; i < total_puts; ++i) {
    std::this_thread::sleep_until(write_start + interval * i);
    const int k = static_cast<int>(rng() % static_cast<uint64_t>(f.keys));
    etcdserverpb::PutRequest req;
    req.set_key(KeyName(k));
    req.set_value(StampedValue(epoch, static_cast<size_t>(f.val_size)));
    etcdserverpb::PutResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const auto t0 = Clock::now();
    const grpc::Status st = kv->Put(&ctx, req, &resp);
    if (st.ok()) {
      put_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      expected_events += watchers_on[static_cast<size_t>(k)];
    } else {
      ++put_errors;
    }
  }
  const double write_s = std::chrono::duration<double>(Clock::now() - write_start).count();
  const auto drain_deadline = Clock::now() + std::chrono::seconds(f.drain_s);
  while (totals.events.load() < expected_events && Clock::now() < drain_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& st : streams) st->Cancel();
  for (auto& st : streams) st->WaitDone();

  std::vector<double> ev_ms;
  ev_ms.reserve(static_cast<size_t>(totals.events.load()));
  for (auto& st : streams) {
    ev_ms.insert(ev_ms.end(), st->latencies_ms().begin(), st->latencies_ms().end());
  }
  const int64_t received = totals.events.load();
  const double ev_max = ev_ms.empty() ? 0 : *std::max_element(ev_ms.begin(), ev_ms.end());
  const double ev_p50 = Percentile(ev_ms, 50);
  const double ev_p99 = Percentile(ev_ms, 99);
  const double put_p50 = Percentile(put_ms, 50);
  const double put_p99 = Percentile(put_ms, 99);
  std::printf(
      "\nRESULT watchers=%lld streams=%d setup_s=%.2f puts=%zu put_errors=%lld "
      "put_rate=%.1f put_p50_ms=%.3f put_p99_ms=%.3f events_expected=%lld events_received=%lld "
      "event_rate=%.0f event_p50_ms=%.3f event_p99_ms=%.3f event_max_ms=%.3f stream_errors=%lld\n",
      static_cast<long long>(want_watchers), f.streams, setup_s, put_ms.size(),
      static_cast<long long>(put_errors), static_cast<double>(put_ms.size()) / write_s, put_p50,
      put_p99, static_cast<long long>(expected_events), static_cast<long long>(received),
      static_cast<double>(received) / write_s, ev_p50, ev_p99, ev_max,
      static_cast<long long>(totals.stream_errors.load()));
  const bool ok = put_errors == 0 && received == expected_events && totals.stream_errors.load() == 0;
  if (!ok) std::fprintf(stderr, "error: events or puts missing (see RESULT)\n");
  return ok ? 0 : 1;
}
