#include "runner.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "checker.h"
#include "cluster_harness.h"
#include "harness.h"
#include "history_io.h"
#include "netns.h"
#include "workload.h"

namespace cppetcd::robustness {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string FaultList(const std::vector<FaultKind>& kinds) {
  std::vector<std::string> names;
  for (FaultKind k : kinds) names.push_back(FaultName(k));
  return names.empty() ? "none" : absl::StrJoin(names, ",");
}

// Set by ParseInto: whether --faults was "all" (or absent), resolved for
// the --net mode once every flag is read.
struct ParseState {
  bool faults_all = true;
};

absl::Status ParseInto(const std::vector<std::string>& args, RunnerOptions* o,
                       std::string* replay, ParseState* state) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    bool has_value = false;
    if (auto eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    auto need = [&]() -> absl::Status {
      if (has_value) return absl::OkStatus();
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(flag + " needs a value");
      value = args[++i];
      has_value = true;
      return absl::OkStatus();
    };
    auto number = [&](int64_t lo, int64_t hi, int64_t* out) -> absl::Status {
      if (absl::Status s = need(); !s.ok()) return s;
      if (!absl::SimpleAtoi(value, out) || *out < lo || *out > hi) {
        return absl::InvalidArgumentError(
            absl::StrCat(flag, ": want a number in [", lo, ", ", hi, "], got '", value, "'"));
      }
      return absl::OkStatus();
    };
    int64_t n = 0;
    absl::Status s;
    if (flag == "--seed") {
      if (s = need(); s.ok() && !absl::SimpleAtoi(value, &o->seed)) {
        s = absl::InvalidArgumentError("--seed: not a number: " + value);
      }
    } else if (flag == "--runs") {
      if (s = number(1, 100000, &n); s.ok()) o->runs = static_cast<int>(n);
    } else if (flag == "--members") {
      if (s = number(3, 5, &n); s.ok()) {
        if (n != 3 && n != 5) s = absl::InvalidArgumentError("--members: 3 or 5");
        o->members = static_cast<int>(n);
      }
    } else if (flag == "--duration-ms") {
      if (s = number(1000, 3'600'000, &n); s.ok()) o->duration = milliseconds(n);
    } else if (flag == "--clients") {
      if (s = number(1, 64, &n); s.ok()) o->clients = static_cast<int>(n);
    } else if (flag == "--faults") {
      if (s = need(); s.ok()) {
        o->faults.clear();
        state->faults_all = value == "all";
        if (value == "all") {
          o->faults = AllFaultKinds();
        } else if (value != "none") {
          for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipEmpty())) {
            auto kind = ParseFaultName(std::string(name));
            if (!kind) {
              return absl::InvalidArgumentError(absl::StrCat("--faults: unknown kind '", name,
                                                             "'; known: ",
                                                             FaultList(AllFaultKinds())));
            }
            o->faults.push_back(*kind);
          }
        }
      }
    } else if (flag == "--skip") {
      if (s = need(); s.ok()) {
        o->skip.clear();
        for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipEmpty())) {
          auto kind = ParseFaultName(std::string(name));
          if (!kind) return absl::InvalidArgumentError(absl::StrCat("--skip: unknown kind '", name, "'"));
          o->skip.push_back(*kind);
        }
      }
    } else if (flag == "--net") {
      if (s = need(); s.ok()) {
        if (value == "proxy") {
          o->net = NetMode::kProxy;
        } else if (value == "netns") {
          o->net = NetMode::kNetns;
        } else {
          s = absl::InvalidArgumentError("--net: 'proxy' or 'netns', got '" + value + "'");
        }
      }
    } else if (flag == "--out") {
      if (s = need(); s.ok()) o->out = value;
    } else if (flag == "--plant") {
      if (s = need(); s.ok()) {
        if (value != "stale-read" && value != "none") {
          s = absl::InvalidArgumentError("--plant: only 'stale-read' (or 'none')");
        }
        o->plant = value == "none" ? "" : value;
      }
    } else if (flag == "--expect-violation") {
      o->expect_violation = !has_value || value == "true" || value == "1";
    } else if (flag == "--require-all-kinds") {
      o->require_all_kinds = true;
    } else if (flag == "--print-schedule") {
      o->print_schedule = true;
    } else if (flag == "--binary") {
      if (s = need(); s.ok()) o->binary = value;
    } else if (flag == "--replay") {
      if (s = need(); s.ok()) *replay = value;
    } else {
      s = absl::InvalidArgumentError("unknown flag " + flag + "\n" + Usage());
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Resolves "all" for the --net mode; refuses listed kinds that cannot work
// in it.
absl::Status Resolve(const ParseState& state, RunnerOptions* o) {
  if (state.faults_all) {
    o->faults = FaultKindsFor(o->net);
    return absl::OkStatus();
  }
  for (FaultKind k : o->faults) {
    if (!KindWorksIn(k, o->net)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--faults: ", FaultName(k), " needs --net ", o->net == NetMode::kProxy ? "netns" : "proxy",
          " (--net ", o->net == NetMode::kProxy ? "proxy" : "netns", " is in effect)"));
    }
  }
  return absl::OkStatus();
}

// Polls until every member's serializable view of the KV prefix is the same
// and at least at `revision`; returns the difference seen last, "" if none.
std::string WaitMembersAgree(integration::Cluster* cluster, int64_t revision,
                             milliseconds timeout) {
  std::string last;
  const std::string prefix = kKvPrefix;
  const std::string end = integration::PrefixEnd(prefix);
  bool ok = integration::PollUntil(
      [&] {
        std::vector<std::string> views;
        for (int i = 0; i < cluster->size(); ++i) {
          auto stub = etcdserverpb::KV::NewStub(NewClientChannel(cluster->member(i).ClientEndpoint()));
          etcdserverpb::RangeResponse resp;
          grpc::Status st = integration::GetKey(stub.get(), prefix, /*serializable=*/true,
                                                milliseconds(1000), &resp, end);
          if (!st.ok()) {
            last = absl::StrCat(cluster->member(i).name(), ": ", st.error_message());
            return false;
          }
          if (resp.header().revision() < revision) {
            last = absl::StrCat(cluster->member(i).name(), " at revision ",
                                resp.header().revision(), " < ", revision);
            return false;
          }
          std::string view;
          for (const auto& kv : resp.kvs()) {
            absl::StrAppend(&view, kv.key(), "=", kv.value(), "@", kv.mod_revision(), "/",
                            kv.create_revision(), "/", kv.version(), " ");
          }
          views.push_back(std::move(view));
        }
        for (size_t i = 1; i < views.size(); ++i) {
          if (views[i] != views[0]) {
            last = absl::StrCat("members disagree: ", cluster->member(0).name(), " {", views[0],
                                "} vs ", cluster->member(static_cast<int>(i)).name(), " {",
                                views[i], "}");
            return false;
          }
        }
        return true;
      },
      timeout);
  return ok ? "" : last;
}

void SaveFailure(const RunnerOptions& options, uint64_t seed, const History& history,
                 integration::Cluster* cluster, RunResult* result) {
  namespace fs = std::filesystem;
  const std::string dir = absl::StrCat(options.out, "/seed-", seed);
  std::error_code ec;
  fs::create_directories(dir, ec);
  absl::Status s = WriteHistory(history, dir + "/history.jsonl");
  if (!s.ok()) std::cerr << "writing history: " << s << "\n";
  if (cluster != nullptr) {
    for (int i = 0; i < cluster->size(); ++i) {
      fs::copy_file(cluster->member(i).log_path(), absl::StrCat(dir, "/", cluster->member(i).name(), ".log"),
                    fs::copy_options::overwrite_existing, ec);
    }
  }
  std::ofstream(dir + "/replay.args") << absl::StrJoin(ReplayArgs(options, seed), "\n") << "\n";
  std::ofstream report(dir + "/report.txt");
  for (const std::string& p : result->problems) report << p << "\n";
  result->saved_dir = dir;
}

}  // namespace

std::string PlantStaleRead(History* h) {
  std::map<std::string, std::vector<const Operation*>> writes;  // by key
  for (const Operation& op : h->operations) {
    if (op.outcome != Outcome::kOk) continue;
    if (op.kind == OpKind::kPut || (op.kind == OpKind::kTxnCas && op.succeeded)) {
      writes[op.key].push_back(&op);
    }
  }
  for (auto it = h->operations.rbegin(); it != h->operations.rend(); ++it) {
    Operation& get = *it;
    if (get.kind != OpKind::kGet || get.outcome != Outcome::kOk || get.serializable ||
        !get.found) {
      continue;
    }
    const auto& ws = writes[get.key];
    const Operation* p2 = nullptr;
    for (const Operation* w : ws) {
      if (w->value == get.found->value && w->complete_ns < get.invoke_ns) p2 = w;
    }
    if (p2 == nullptr) continue;
    for (const Operation* p1 : ws) {
      if (p1->complete_ns < p2->invoke_ns && p1->value != p2->value) {
        std::string text = absl::StrCat("planted stale read: op ", get.id, " Get(", get.key,
                                        ") now returns '", p1->value, "' (op ", p1->id,
                                        ") instead of '", get.found->value, "' (op ", p2->id, ")");
        get.found->value = p1->value;
        get.found->mod_revision = p1->revision;
        return text;
      }
    }
  }
  return "";
}

std::string Usage() {
  return absl::StrCat(
      "usage: cppetcd-robustness [--seed S] [--runs N] [--members 3|5]\n"
      "         [--faults all|none|k1,k2,...] [--duration-ms MS] [--clients K]\n"
      "         [--out DIR] [--plant stale-read] [--expect-violation]\n"
      "         [--binary PATH] [--replay DIR|SEED] [--print-schedule]\n"
      "         [--require-all-kinds] [--skip k1,k2,...] [--net proxy|netns]\n"
      "fault kinds (--net proxy): ",
      FaultList(FaultKindsFor(NetMode::kProxy)), "\n",
      "fault kinds (--net netns, root only): ", FaultList(FaultKindsFor(NetMode::kNetns)), "\n",
      "exit status: 0 passed, 1 failed, 2 harness error, ", kExitUnsupported,
      " --net netns unsupported here\n");
}

absl::StatusOr<RunnerOptions> ParseRunnerArgs(const std::vector<std::string>& args) {
  RunnerOptions o;
  std::string replay;
  ParseState state;
  if (absl::Status s = ParseInto(args, &o, &replay, &state); !s.ok()) return s;
  if (absl::Status s = Resolve(state, &o); !s.ok()) return s;
  if (replay.empty()) return o;
  uint64_t seed = 0;
  if (absl::SimpleAtoi(replay, &seed)) {
    o.seed = seed;
    o.runs = 1;
    return o;
  }
  // A saved run: its flags first, then the command line's (which win).
  std::ifstream in(replay + "/replay.args");
  if (!in) return absl::NotFoundError("no " + replay + "/replay.args");
  std::vector<std::string> saved;
  std::string line;
  for (int i = 0; i < 1000 && std::getline(in, line); ++i) {
    if (!line.empty()) saved.push_back(line);
  }
  RunnerOptions r;
  std::string ignored;
  ParseState replay_state;
  if (absl::Status s = ParseInto(saved, &r, &ignored, &replay_state); !s.ok()) return s;
  if (absl::Status s = ParseInto(args, &r, &ignored, &replay_state); !s.ok()) return s;
  if (absl::Status s = Resolve(replay_state, &r); !s.ok()) return s;
  r.runs = 1;
  return r;
}

std::vector<std::string> ReplayArgs(const RunnerOptions& o, uint64_t seed) {
  std::vector<std::string> a = {
      absl::StrCat("--seed=", seed),
      absl::StrCat("--members=", o.members),
      absl::StrCat("--faults=", FaultList(o.faults)),
      absl::StrCat("--duration-ms=", o.duration.count()),
      absl::StrCat("--clients=", o.clients),
  };
  if (o.net == NetMode::kNetns) a.push_back("--net=netns");
  if (!o.plant.empty()) a.push_back("--plant=" + o.plant);
  return a;
}

RunResult RunOne(const RunnerOptions& options, uint64_t seed) {
  RunResult result;
  result.seed = seed;
  const auto started = Clock::now();
  auto finish = [&]() -> RunResult {
    result.wall = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
    return result;
  };
  integration::TempDir base;
  integration::Cluster::Options copts;
  copts.size = options.members;
  copts.binary = options.binary;
  copts.proxies = options.net == NetMode::kProxy;
  // --net netns: a namespace per member. Declared before the cluster so
  // that it is torn down after the members are stopped.
  std::unique_ptr<NetnsNetwork> net;
  if (options.net == NetMode::kNetns) {
    auto made = NetnsNetwork::Create(options.members);
    if (!made.ok()) {
      result.infrastructure_error = true;
      result.problems.push_back("network namespaces: " + std::string(made.status().message()));
      return finish();
    }
    net = std::move(*made);
    copts.networks = net->MemberNetworks();
    std::cout << "  network: namespaces " << absl::StrJoin(net->addresses(), ", ")
              << ", nft table bridge " << net->table() << std::endl;
  }
  // The ENOSPC fault needs every data dir on its own small tmpfs.
  std::unique_ptr<TmpfsDataDirs> tmpfs;
  if (std::find(options.faults.begin(), options.faults.end(), FaultKind::kEnospc) !=
      options.faults.end()) {
    std::vector<std::string> dirs;
    for (int i = 0; i < options.members; ++i) dirs.push_back(absl::StrCat(base.path(), "/m", i, ".data"));
    auto mounted = TmpfsDataDirs::Mount(dirs, 256);
    if (mounted.ok()) {
      tmpfs = std::move(*mounted);
    } else {
      std::cout << "  enospc faults will be skipped: " << mounted.status().message() << std::endl;
    }
  }
  // The clock-jump fault runs every member under libfaketime.
  std::string clock_dir;
  if (std::find(options.faults.begin(), options.faults.end(), FaultKind::kClockJump) !=
      options.faults.end()) {
    std::vector<std::string> names;
    for (int i = 0; i < options.members; ++i) names.push_back(absl::StrCat("m", i));
    const std::string server = copts.binary.empty() ? integration::ServerBinary() : copts.binary;
    auto wrapper = ClockWrapper(base.path(), server, names);
    if (wrapper.ok()) {
      copts.binary = *wrapper;
      clock_dir = base.path();
    } else {
      std::cout << "  clock-jump faults will be skipped: " << wrapper.status().message()
                << std::endl;
    }
  }
  // The power-loss and slow-fsync faults run every member under the
  // power-loss interposer (outside the clock wrapper, if any), each with its
  // own undo log / fsync delay file.
  auto selected = [&](FaultKind k) {
    return std::find(options.faults.begin(), options.faults.end(), k) != options.faults.end();
  };
  const bool undo_logs = selected(FaultKind::kPowerLoss) || selected(FaultKind::kPowerLossAll);
  const bool fsync_delay = selected(FaultKind::kSlowFsync);
  std::string powerloss_dir;
  if (undo_logs || fsync_delay) {
    std::vector<std::string> names;
    for (int i = 0; i < options.members; ++i) names.push_back(absl::StrCat("m", i));
    const std::string server = copts.binary.empty() ? integration::ServerBinary() : copts.binary;
    auto wrapper = PowerLossWrapper(base.path(), server, names, undo_logs, fsync_delay);
    if (wrapper.ok()) {
      copts.binary = *wrapper;
      powerloss_dir = base.path();
    } else {
      std::cout << "  power-loss and slow-fsync faults will be skipped: "
                << wrapper.status().message() << std::endl;
    }
  }
  auto cluster_or = integration::Cluster::Start(copts, base.path());
  if (!cluster_or.ok()) {
    result.infrastructure_error = true;
    result.problems.push_back("cluster start: " + std::string(cluster_or.status().message()));
    return finish();
  }
  std::unique_ptr<integration::Cluster> cluster = std::move(*cluster_or);

  HistoryRecorder recorder;
  Workload::Config wconfig;
  wconfig.seed = seed;
  wconfig.kv_clients = options.clients;
  wconfig.watch_clients = 2;
  for (int i = 0; i < cluster->size(); ++i) {
    wconfig.endpoints.push_back(cluster->member(i).ClientEndpoint());
  }
  Workload workload(wconfig, &recorder);
  workload.Start();

  // The fault window.
  const auto window_start = Clock::now();
  FaultInjector injector(cluster.get());
  injector.set_tmpfs(tmpfs.get());
  injector.set_clock_dir(clock_dir);
  if (undo_logs) injector.set_powerloss_dir(powerloss_dir);
  if (fsync_delay) injector.set_fsync_delay_dir(powerloss_dir);
  injector.set_skip(options.skip);
  injector.set_netns(net.get());
  const auto schedule = MakeSchedule(seed, options.members, options.faults, options.duration);
  std::vector<FaultRecord> records;
  if (absl::Status s = injector.Run(schedule, options.duration, &records); !s.ok()) {
    result.problems.push_back("fault recovery failed: " + std::string(s.message()));
  }
  for (const FaultRecord& r : records) {
    if (r.injected) ++result.faults_by_kind[FaultName(r.kind)];
  }
  // Let the workload run to the end of the window if the faults ended early.
  for (int i = 0; i < 100000 && Clock::now() - window_start < options.duration; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }

  // Heal, stop the clients, read everything back.
  absl::Status healed = injector.HealAll(milliseconds(30'000));
  if (!healed.ok()) result.problems.push_back("heal: " + std::string(healed.message()));
  workload.StopClients();
  workload.JoinClients();
  int reader = 0;
  if (auto leader = cluster->WaitForLeader(milliseconds(10'000)); leader.ok()) reader = *leader;
  const int64_t sentinel_revision = workload.FinalReads(reader, 20);
  if (sentinel_revision == 0) {
    result.problems.push_back("final write of the sentinel key never succeeded");
  } else {
    for (const std::string& w : workload.WaitWatchersCaughtUp(sentinel_revision,
                                                               milliseconds(15'000))) {
      result.problems.push_back("watch stalled: " + w);
    }
  }
  workload.StopWatchers();

  // Every member serves a linearizable read and they all agree.
  for (int i = 0; i < cluster->size(); ++i) {
    absl::Status s = cluster->member(i).WaitServing(milliseconds(20'000));
    if (!s.ok()) {
      result.problems.push_back(absl::StrCat("member ", cluster->member(i).name(),
                                             " unhealthy: ", std::string(s.message()).substr(0, 400)));
    }
  }
  if (std::string diff = WaitMembersAgree(cluster.get(), sentinel_revision, milliseconds(15'000));
      !diff.empty()) {
    result.problems.push_back("members diverge: " + diff);
  }
  result.violations = static_cast<int>(result.problems.size());

  // Check the history.
  History history = recorder.Snapshot();
  if (options.plant == "stale-read") {
    const std::string planted = PlantStaleRead(&history);
    std::cout << "  " << (planted.empty() ? "nothing to plant: no suitable Get" : planted)
              << std::endl;
  }
  result.operations =
      static_cast<int64_t>(history.operations.size() + history.lease_operations.size());
  result.watch_responses = static_cast<int64_t>(history.watch_responses.size());
  struct Named {
    const char* name;
    CheckReport report;
  };
  std::vector<Named> reports;
  reports.push_back({"linearizability", CheckLinearizability(history)});
  reports.push_back({"watch", CheckWatches(history)});
  reports.push_back({"lease", CheckLeases(history)});
  for (const Named& n : reports) {
    if (std::string(n.name) == "linearizability") {
      result.operations_checked = n.report.operations_checked;
    }
    for (const std::string& p : n.report.problems) {
      result.problems.push_back(absl::StrCat(n.name, ": ", p));
    }
    if (n.report.verdict == Verdict::kViolation) {
      const int found = std::max<int>(1, static_cast<int>(n.report.problems.size()));
      result.violations += found;
      result.checker_violations += found;
    } else if (n.report.verdict == Verdict::kInconclusive) {
      result.inconclusive += std::max<int>(1, static_cast<int>(n.report.problems.size()));
    }
  }
  result.passed = result.violations == 0;
  if (!result.passed || options.expect_violation) {
    SaveFailure(options, seed, history, cluster.get(), &result);
  }
  return finish();
}

int RunAll(const RunnerOptions& options) {
  if (options.print_schedule) {
    for (int r = 0; r < options.runs; ++r) {
      const uint64_t seed = options.seed + static_cast<uint64_t>(r);
      std::cout << "seed " << seed << ":";
      for (const ScheduledFault& f :
           MakeSchedule(seed, options.members, options.faults, options.duration)) {
        std::cout << " " << FaultName(f.kind) << "@" << f.start.count() << "ms+"
                  << f.hold.count() << "ms";
        if (f.kind == FaultKind::kNftPartition || f.kind == FaultKind::kNftOneWay) {
          std::vector<std::string> set;
          for (int i : MembersOf(f.param, options.members)) set.push_back(absl::StrCat("m", i));
          std::cout << "/{" << absl::StrJoin(set, ",") << "}";
        } else if (f.kind != FaultKind::kKillLeader && f.kind != FaultKind::kPauseLeader &&
                   f.kind != FaultKind::kIsolateLeader && f.kind != FaultKind::kNftIsolateLeader) {
          std::cout << "/m" << f.target;
        }
      }
      std::cout << "\n";
    }
    return 0;
  }
  if (options.net == NetMode::kNetns) {
    if (absl::Status s = CheckNetnsCapability(); !s.ok()) {
      std::cout << "SKIP: --net netns is not possible here: " << s.message()
                << " (run as root with ip(8) and nft(8); exit status " << kExitUnsupported
                << ")" << std::endl;
      return kExitUnsupported;
    }
    for (const std::string& r : CleanStaleNetns()) {
      std::cout << "removed a crashed run's " << r << std::endl;
    }
  }
  const auto started = Clock::now();
  std::map<std::string, int> faults;
  int64_t ops = 0, checked = 0, watch = 0;
  int violations = 0, inconclusive = 0, failed = 0, infra = 0, detected = 0;
  std::vector<std::string> replays;
  std::cout << "cppetcd-robustness: seeds " << options.seed << ".."
            << options.seed + options.runs - 1 << ", " << options.members << " members, faults "
            << FaultList(options.faults) << ", " << options.duration.count() << " ms, "
            << options.clients << " clients, net "
            << (options.net == NetMode::kNetns ? "netns" : "proxy") << std::endl;
  for (int r = 0; r < options.runs; ++r) {
    const uint64_t seed = options.seed + static_cast<uint64_t>(r);
    std::cout << "run seed " << seed << std::endl;
    RunResult res = RunOne(options, seed);
    std::vector<std::string> fk;
    for (const auto& [k, n] : res.faults_by_kind) {
      fk.push_back(absl::StrCat(k, " ", n));
      faults[k] += n;
    }
    const char* verdict = res.infrastructure_error ? "ERROR" : res.passed ? "PASS" : "FAIL";
    std::cout << "seed " << seed << " " << verdict << ": " << res.operations << " ops ("
              << res.operations_checked << " checked), " << res.watch_responses
              << " watch responses, faults {" << absl::StrJoin(fk, ", ") << "}, "
              << res.violations << " violations, " << res.inconclusive << " inconclusive, "
              << res.wall.count() << " ms" << std::endl;
    for (size_t i = 0; i < res.problems.size() && i < 20; ++i) {
      std::cout << "    " << res.problems[i] << "\n";
    }
    if (res.problems.size() > 20) std::cout << "    ... " << res.problems.size() - 20 << " more\n";
    if (!res.saved_dir.empty()) {
      std::cout << "  saved history and member logs in " << res.saved_dir << "\n"
                << "  replay: cppetcd-robustness --replay " << res.saved_dir << std::endl;
      replays.push_back(res.saved_dir);
    }
    ops += res.operations;
    checked += res.operations_checked;
    watch += res.watch_responses;
    violations += res.violations;
    inconclusive += res.inconclusive;
    if (res.infrastructure_error) ++infra;
    if (!res.passed && !res.infrastructure_error) ++failed;
    if (res.checker_violations > 0 && !res.infrastructure_error) ++detected;
  }
  std::vector<std::string> fk;
  for (const auto& [k, n] : faults) fk.push_back(absl::StrCat(k, " ", n));
  const auto wall = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
  std::cout << "summary: " << options.runs << " runs, " << options.runs - failed - infra
            << " passed, " << failed << " failed, " << infra << " errors; faults {"
            << absl::StrJoin(fk, ", ") << "}; " << ops << " ops recorded, " << checked
            << " checked, " << watch << " watch responses; " << violations << " violations, "
            << inconclusive << " inconclusive; " << wall.count() << " ms" << std::endl;
  std::vector<std::string> missing;
  for (FaultKind k : options.faults) {
    if (faults.count(FaultName(k)) == 0) missing.push_back(FaultName(k));
  }
  if (!missing.empty()) {
    std::cout << "fault kinds never injected: " << absl::StrJoin(missing, ", ") << std::endl;
  }
  if (options.require_all_kinds && !missing.empty()) {
    std::cout << "FAIL: --require-all-kinds" << std::endl;
    return 1;
  }
  if (options.expect_violation) {
    const bool all = detected == options.runs;
    std::cout << (all ? "expected violations found in every run"
                      : "EXPECTED a checker violation in every run, did not get one")
              << std::endl;
    return all ? 0 : 1;
  }
  if (infra > 0) return 2;
  return failed > 0 ? 1 : 0;
}

}  // namespace cppetcd::robustness
