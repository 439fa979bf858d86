// cppetcd-bench: a load generator for the etcd v3 gRPC API, in the manner
// of etcd's `benchmark` tool (tools/benchmark), for comparing cppetcd with
// etcd on the same machine.
//
//   cppetcd-bench --endpoints 127.0.0.1:2379 --conns 10 --clients 100
//       put --total 20000 --key-size 8 --val-size 256 [--sequential-keys]
//       [--key-space-size N]
//   cppetcd-bench --endpoints 127.0.0.1:2379 --conns 10 --clients 100
//       range KEY [END] --total 20000 --consistency l|s
//   cppetcd-bench --endpoints 127.0.0.1:2379 --conns 10 --clients 10
//       list KEY END --total 10 --consistency l|s --timeout 300
//
// `list` is a Range like `range`, for large responses (a full-keyspace LIST):
// the answer is received as raw bytes and not parsed, so the client's own
// memory stays at one copy per call; the bytes received are reported.
// --conns gRPC connections are shared round-robin by --clients client
// threads; each client issues one request at a time until --total requests
// have been sent. With --cacert (and --cert/--key for a client
// certificate) the endpoints are dialled over TLS. Prints throughput and the latency distribution, then a
// machine-readable "RESULT ..." line (used by bench/compare.sh).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "flag_parser.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::vector<std::string> endpoints = {"127.0.0.1:2379"};
  int conns = 1;
  int clients = 1;
  std::string command;  // "put", "range" or "list"
  int64_t total = 10000;
  int key_size = 8;
  int val_size = 8;
  bool sequential_keys = false;
  int64_t key_space_size = 1;
  std::string range_key;
  std::string range_end;
  std::string consistency = "l";
  int timeout_seconds = 10;  // per request
  // TLS (etcd benchmark's flags): with --cacert the endpoints are dialled
  // over TLS; --cert/--key add a client certificate.
  std::string cacert, cert, key;
};

[[noreturn]] void Usage(const char* msg) {
  std::fprintf(stderr,
               "error: %s\n"
               "usage: cppetcd-bench [--endpoints host:port[,host:port...]] [--conns N] "
               "[--clients M] [--cacert CA --cert CERT --key KEY]\n"
               "         put [--total T] [--key-size K] [--val-size V] [--sequential-keys] "
               "[--key-space-size S]\n"
               "       | range KEY [END] [--total T] [--consistency l|s]\n"
               "       | list KEY END [--total T] [--consistency l|s]\n",
               msg);
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  std::vector<std::string> positional;
  constexpr int64_t kMaxInt = 1'000'000'000;
  cppetcd::bench::FlagParser p(argc, argv, Usage);
  while (p.Next()) {
    const std::string& a = p.name();
    if (a == "--endpoints") {
      f.endpoints = cppetcd::bench::SplitList(p.Value(), ',');
    } else if (a == "--conns") {
      f.conns = static_cast<int>(p.Int(0, kMaxInt));
    } else if (a == "--clients") {
      f.clients = static_cast<int>(p.Int(0, kMaxInt));
    } else if (a == "--total") {
      f.total = p.Int(0, INT64_MAX);
    } else if (a == "--key-size") {
      f.key_size = static_cast<int>(p.Int(0, kMaxInt));
    } else if (a == "--val-size") {
      f.val_size = static_cast<int>(p.Int(0, kMaxInt));
    } else if (a == "--sequential-keys") {
      f.sequential_keys = true;
    } else if (a == "--key-space-size") {
      f.key_space_size = p.Int(0, INT64_MAX);
    } else if (a == "--consistency") {
      f.consistency = p.Value();
    } else if (a == "--cacert") {
      f.cacert = p.Value();
    } else if (a == "--cert") {
      f.cert = p.Value();
    } else if (a == "--key") {
      f.key = p.Value();
    } else if (a == "--timeout") {
      f.timeout_seconds = static_cast<int>(p.Int(0, kMaxInt));
    } else if (a == "-h" || a == "--help") {
      Usage("help requested");
    } else if (a.rfind("--", 0) == 0) {
      Usage(("unknown flag " + a).c_str());
    } else {
      positional.push_back(a);
    }
  }
  if (positional.empty()) Usage("missing command (put or range)");
  f.command = positional[0];
  if (f.command == "put") {
    if (positional.size() != 1) Usage("put takes no arguments");
  } else if (f.command == "range" || f.command == "list") {
    if (positional.size() < 2 || positional.size() > 3) Usage("range takes KEY [END]");
    f.range_key = positional[1];
    if (positional.size() == 3) f.range_end = positional[2];
    if (f.consistency != "l" && f.consistency != "s") Usage("--consistency must be l or s");
  } else {
    Usage(("unknown command " + f.command).c_str());
  }
  if (f.conns < 1 || f.clients < 1 || f.total < 1) Usage("conns, clients, total must be >= 1");
  if (f.key_size < 1) Usage("--key-size must be >= 1");
  if (f.key_space_size < 1) f.key_space_size = 1;
  return f;
}

// A key of exactly `size` bytes for number `n` (zero-padded decimal, cut to
// the low-order digits if `size` is small).
std::string MakeKey(int64_t n, int size) {
  std::string digits = std::to_string(n);
  if (static_cast<int>(digits.size()) >= size) return digits.substr(digits.size() - size);
  return std::string(size - digits.size(), '0') + digits;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t idx = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  idx = std::clamp<size_t>(idx, 1, sorted.size()) - 1;
  return sorted[idx];
}

}  // namespace

int main(int argc, char** argv) {
  // As cppetcd's main: no lock-order graph on gRPC's absl::Mutex (Debian's
  // abseil keeps it on), so the client spends its CPU on requests.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const Flags f = ParseFlags(argc, argv);

  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!f.cacert.empty()) {
    auto read = [](const std::string& path) {
      std::ifstream in(path);
      if (!in) Usage(("cannot read " + path).c_str());
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read(f.cacert);
    if (!f.cert.empty()) ssl.pem_cert_chain = read(f.cert);
    if (!f.key.empty()) ssl.pem_private_key = read(f.key);
    creds = grpc::SslCredentials(ssl);
  }
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < f.conns; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("cppetcd.bench.conn", i);  // a distinct arg: a distinct connection
    args.SetMaxReceiveMessageSize(-1);
    channels.push_back(grpc::CreateCustomChannel(f.endpoints[i % f.endpoints.size()],
                                                 creds, args));
  }
  for (auto& ch : channels) {
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::fprintf(stderr, "error: cannot connect to %s\n", f.endpoints[0].c_str());
      return 1;
    }
  }

  std::string value(static_cast<size_t>(f.val_size), '\0');
  {
    std::mt19937_64 rng(42);
    for (auto& c : value) c = static_cast<char>('a' + rng() % 26);
  }

  std::atomic<int64_t> next{0};
  std::atomic<int64_t> errors{0};
  std::atomic<int64_t> bytes_received{0};
  std::mutex mu;
  std::map<std::string, int64_t> error_messages;
  std::vector<std::vector<double>> latencies(static_cast<size_t>(f.clients));
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int c = 0; c < f.clients; ++c) {
    threads.emplace_back([&, c] {
      auto& channel = channels[static_cast<size_t>(c) % channels.size()];
      auto kv = etcdserverpb::KV::NewStub(channel);
      grpc::GenericStub generic(channel);
      std::mt19937_64 rng(static_cast<uint64_t>(c) * 7919 + 1);
      auto& lat = latencies[static_cast<size_t>(c)];
      lat.reserve(static_cast<size_t>(f.total / f.clients + 1));
      for (int64_t i = next.fetch_add(1); i < f.total; i = next.fetch_add(1)) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(f.timeout_seconds));
        grpc::Status st;
        const auto t0 = Clock::now();
        if (f.command == "put") {
          etcdserverpb::PutRequest req;
          int64_t n = f.sequential_keys ? i : static_cast<int64_t>(rng() % f.key_space_size);
          req.set_key(MakeKey(n, f.key_size));
          req.set_value(value);
          etcdserverpb::PutResponse resp;
          st = kv->Put(&ctx, req, &resp);
        } else if (f.command == "list") {
          etcdserverpb::RangeRequest req;
          req.set_key(f.range_key);
          req.set_range_end(f.range_end);
          req.set_serializable(f.consistency == "s");
          std::string wire = req.SerializeAsString();
          grpc::Slice slice(wire);
          grpc::ByteBuffer request(&slice, 1), response;
          std::mutex call_mu;
          std::condition_variable call_cv;
          bool call_done = false;
          generic.UnaryCall(&ctx, "/etcdserverpb.KV/Range", grpc::StubOptions(), &request,
                            &response, [&](grpc::Status s) {
                              std::lock_guard<std::mutex> lock(call_mu);
                              st = std::move(s);
                              call_done = true;
                              call_cv.notify_one();
                            });
          std::unique_lock<std::mutex> lock(call_mu);
          call_cv.wait(lock, [&] { return call_done; });
          if (st.ok()) bytes_received.fetch_add(static_cast<int64_t>(response.Length()));
        } else {
          etcdserverpb::RangeRequest req;
          req.set_key(f.range_key);
          req.set_range_end(f.range_end);
          req.set_serializable(f.consistency == "s");
          etcdserverpb::RangeResponse resp;
          st = kv->Range(&ctx, req, &resp);
        }
        const auto t1 = Clock::now();
        if (st.ok()) {
          lat.push_back(std::chrono::duration<double>(t1 - t0).count());
        } else {
          errors.fetch_add(1);
          std::lock_guard<std::mutex> lock(mu);
          ++error_messages[st.error_message()];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  double sum = 0;
  for (double x : all) sum += x;
  const double avg = all.empty() ? 0 : sum / all.size();
  double var = 0;
  for (double x : all) var += (x - avg) * (x - avg);
  const double stddev = all.empty() ? 0 : std::sqrt(var / all.size());
  const double rps = elapsed > 0 ? all.size() / elapsed : 0;

  std::printf("\nSummary:\n");
  std::printf("  Total:\t%.4f secs.\n", elapsed);
  std::printf("  Slowest:\t%.4f secs.\n", all.empty() ? 0 : all.back());
  std::printf("  Fastest:\t%.4f secs.\n", all.empty() ? 0 : all.front());
  std::printf("  Average:\t%.4f secs.\n", avg);
  std::printf("  Stddev:\t%.4f secs.\n", stddev);
  std::printf("  Requests/sec:\t%.4f\n", rps);
  std::printf("  Succeeded:\t%zu\n  Errors:\t%lld\n", all.size(),
              static_cast<long long>(errors.load()));
  if (f.command == "list") {
    std::printf("  Bytes received:\t%lld\n", static_cast<long long>(bytes_received.load()));
  }
  for (const auto& [msg, n] : error_messages) {
    std::printf("    %lld x %s\n", static_cast<long long>(n), msg.c_str());
  }
  std::printf("\nLatency distribution:\n");
  for (double p : {10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9}) {
    std::printf("  %g%% in %.4f secs.\n", p, Percentile(all, p));
  }
  std::printf(
      "\nRESULT op=%s total=%lld ok=%zu errors=%lld seconds=%.3f rps=%.1f p50_ms=%.3f "
      "p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
      f.command.c_str(), static_cast<long long>(f.total), all.size(),
      static_cast<long long>(errors.load()), elapsed, rps, Percentile(all, 50) * 1e3,
      Percentile(all, 90) * 1e3, Percentile(all, 99) * 1e3, all.empty() ? 0 : all.back() * 1e3);
  return errors.load() == 0 ? 0 : 1;
}
