// Fuzz target: the command line and ETCD_* environment (cmd/flags.cc). The
// input is split at NUL bytes; the parts before an empty part are argv[1..],
// the ones after are "KEY=VALUE" environment strings. The whole input also
// goes through the value parsers (URL lists, --initial-cluster, Go
// durations, periodic retention). Invariants: no crash; a parsed URL prints
// back (Url::ToString) to text that parses to the same URL.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cppetcd/cmd/flags.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cppetcd;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args, env;
  bool in_env = false;
  for (std::string_view part : fuzz::Split(in, std::string_view("\0", 1))) {
    if (part.empty() && !in_env) {
      in_env = true;
      continue;
    }
    (in_env ? env : args).emplace_back(part);
  }
  if (args.size() > 64 || env.size() > 64) return 0;
  // --config-file reads a file by name (/dev/stdin would block): the YAML
  // parser has its own target.
  if (in.find("onfig") != std::string_view::npos || in.find("ONFIG") != std::string_view::npos) return 0;
  (void)cmd::ParseCommandLine(args, env);

  (void)cmd::ParseInitialCluster(in);
  (void)cmd::ParseGoDuration(in);
  (void)cmd::ParsePeriodicRetention(in);
  if (auto urls = cmd::ParseUrls(in); urls.ok()) {
    for (const cmd::Url& u : *urls) {
      auto again = cmd::ParseUrl(u.ToString());
      FUZZ_CHECK(again.ok(), "printed URL does not parse: " + u.ToString() + ": " +
                                 again.status().ToString());
      FUZZ_CHECK(*again == u, "URL round trip changed it: " + u.ToString());
    }
  }
  return 0;
}
