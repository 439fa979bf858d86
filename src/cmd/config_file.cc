// etcd's YAML configuration file (--config-file): the same keys as the
// command-line flags, with TLS settings in client-transport-security and
// peer-transport-security sections. Keys etcd does not know are ignored, as
// etcd's YAML decoding ignores them; a null value keeps the default.
#include <algorithm>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cppetcd/cmd/flags.h"
#include "cppetcd/util/error.h"
#include "cppetcd/util/tls.h"
#include "yaml-cpp/yaml.h"

namespace cppetcd::cmd {
namespace {

// YAML value → the string the flag parser takes (sequences comma-joined).
absl::StatusOr<std::optional<std::string>> ScalarText(const YAML::Node& n, const std::string& key) {
  if (!n || n.IsNull()) return std::optional<std::string>();
  if (n.IsScalar()) return std::optional<std::string>(n.Scalar());
  if (n.IsSequence()) {
    std::vector<std::string> parts;
    for (const YAML::Node& item : n) {
      if (!item.IsScalar()) {
        return absl::InvalidArgumentError(absl::StrCat("config file: \"", key, "\" must be a list of strings"));
      }
      parts.push_back(item.Scalar());
    }
    return std::optional<std::string>(absl::StrJoin(parts, ","));
  }
  return absl::InvalidArgumentError(absl::StrCat("config file: unexpected value for \"", key, "\""));
}

}  // namespace

absl::StatusOr<EtcdConfig> LoadConfigFile(const std::string& path) {
  // Read as a certificate file is: up to util::kMaxPemFileBytes, so that a
  // wrong path (a device, a huge file) ends with an error.
  absl::StatusOr<std::string> text = util::ReadPemFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(
        absl::StrCat("cannot read config file \"", path, "\": ", text.status().message()));
  }

  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("error parsing config file \"", path, "\": ", e.what()));
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat("config file \"", path, "\" is not a YAML mapping"));
  }

  // Rebuild an argument list and reuse the flag parser, so that a key means
  // exactly what the flag of the same name means.
  std::vector<std::string> args;
  auto add = [&](const std::string& flag, const YAML::Node& v) -> absl::Status {
    auto text = ScalarText(v, flag);
    if (!text.ok()) return text.status();
    if (!text->has_value()) return absl::OkStatus();
    if ((flag == "data-dir" || flag == "wal-dir" || flag == "initial-cluster" ||
         flag == "discovery") && (*text)->empty()) {
      return absl::OkStatus();
    }
    args.push_back(absl::StrCat("--", flag, "=", **text));
    return absl::OkStatus();
  };
  static const char* kSecurityKeys[] = {"cert-file", "key-file", "client-cert-auth",
                                        "trusted-ca-file", "auto-tls", "crl-file"};
  try {
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      if (key == "config-file") continue;
      if (key == "client-transport-security" || key == "peer-transport-security") {
        if (!kv.second.IsMap()) continue;
        bool peer = key == "peer-transport-security";
        for (const char* sk : kSecurityKeys) {
          std::string flag = sk;
          if (flag == "crl-file") flag = peer ? "peer-crl-file" : "client-crl-file";
          else if (peer) flag = "peer-" + flag;
          if (absl::Status s = add(flag, kv.second[sk]); !s.ok()) return s;
        }
        continue;
      }
      // etcd 3.5's key; 3.4 ignores it.
      if (key == "self-signed-cert-validity") continue;
      if (kv.second.IsMap()) continue;
      if (absl::Status s = add(key, kv.second); !s.ok()) return s;
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("error reading config file \"", path, "\": ", e.what()));
  }

  // etcd 3.4 (embed/config.go): with discovery-srv, an initial-cluster
  // equal to the default ("default=http://localhost:2380") counts as unset.
  const bool dns_discovery = std::any_of(args.begin(), args.end(), [](const std::string& a) {
    return a.rfind("--discovery-srv=", 0) == 0 && a != "--discovery-srv=";
  });
  if (dns_discovery) {
    args.erase(std::remove(args.begin(), args.end(),
                           std::string("--initial-cluster=default=http://localhost:2380")),
               args.end());
  }

  // Unknown keys are ignored (etcd decodes into a struct); drop them here.
  std::vector<std::string> known;
  for (const std::string& a : args) {
    auto r = ParseCommandLine({a}, {});
    if (!util::HasErrorCode(r.status(), util::ErrorCode::kFlagNotDefined)) {
      known.push_back(a);
    }
  }
  auto parsed = ParseCommandLine(known, {});
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config file \"", path, "\": ", parsed.status().message()));
  }
  parsed->config.config_file = path;
  return parsed->config;
}

}  // namespace cppetcd::cmd
