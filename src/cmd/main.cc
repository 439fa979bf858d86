// cppetcd: an etcd 3.4 compatible member. Flags, ETCD_* variables and
// --config-file as etcd (cmd/flags.h); exit code 2 on bad flags.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cppetcd/cmd/flags.h"
#include "cppetcd/util/log.h"
#include "run.h"  // same directory: the executable has no src/ include path
#include "snapshot_cmd.h"

extern char** environ;

namespace {

cppetcd::util::LogLevel LevelFor(const cppetcd::cmd::EtcdConfig& config) {
  if (config.debug) return cppetcd::util::LogLevel::kDebug;
  return cppetcd::util::ParseLogLevel(config.log_level).value_or(cppetcd::util::LogLevel::kInfo);
}

// etcd's --log-outputs: "default" and "stderr" are stderr; one output only.
std::string LogOutput(const cppetcd::cmd::EtcdConfig& config) {
  if (config.log_outputs.empty() || config.log_outputs[0] == "default") return "stderr";
  return config.log_outputs[0];
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil is built without NDEBUG, so every absl::Mutex (gRPC's
  // locks are) runs its lock-order graph on each acquire: 3-5 % of a busy
  // server's CPU in perf. Lock order is checked by the TSan pass instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "snapshot") {
    return cppetcd::cmd::RunSnapshotCommand({args.begin() + 1, args.end()}, std::cout, std::cerr);
  }
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);

  auto parsed = cppetcd::cmd::ParseCommandLine(args, env);
  if (!parsed.ok()) {
    std::cerr << parsed.status().message() << "\n" << cppetcd::cmd::Usage();
    return 2;
  }
  switch (parsed->action) {
    case cppetcd::cmd::Action::kVersion:
      std::cout << cppetcd::cmd::VersionText();
      return 0;
    case cppetcd::cmd::Action::kHelp:
      std::cout << cppetcd::cmd::Usage();
      return 0;
    case cppetcd::cmd::Action::kRun:
      break;
  }

  const cppetcd::cmd::EtcdConfig& config = parsed->config;
  cppetcd::util::InitLogging(LevelFor(config), LogOutput(config));
  cppetcd::util::Logger log = cppetcd::util::GetLogger("etcdmain");
  for (const std::string& used : parsed->env_used) {
    log.Info(std::string("recognized and used environment variable ") + used);
  }
  for (const std::string& unknown : parsed->env_unrecognized) {
    log.Warn(std::string("unrecognized environment variable ") + unknown);
  }
  log.Info("starting cppetcd", {{"etcd-version", CPPETCD_ETCD_COMPAT_VERSION},
                                {"cppetcd-version", CPPETCD_VERSION},
                                {"name", config.name},
                                {"data-dir", config.data_dir}});
  return cppetcd::cmd::Run(config);
}
