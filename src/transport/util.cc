// Peer URL parsing, status conversion, listen-failure wording, rate limiter.
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "src/transport/impl.h"

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

namespace cppetcd::transport {

absl::StatusOr<PeerUrl> ParsePeerUrl(const std::string& url) {
  PeerUrl out;
  std::string rest;
  if (absl::StartsWith(url, "http://")) {
    rest = url.substr(7);
  } else if (absl::StartsWith(url, "https://")) {
    rest = url.substr(8);
    out.secure = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("URL scheme must be http or https: ", url));
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("URL must not contain a path: ", url));
  }
  std::string port_text;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("URL address must be host:port: ", url));
    }
    out.host = rest.substr(0, close + 1);
    port_text = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(absl::StrCat("URL address must be host:port: ", url));
    }
    out.host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
  }
  int port = 0;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("URL has an invalid port: ", url));
  }
  out.port = port;
  out.target = absl::StrCat(out.host, ":", port);
  return out;
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  // Details a peer could not have sent (garbage, or from another program)
  // leave the error untyped.
  peerpb::StatusDetails details;
  if (!s.error_details().empty() && details.ParseFromString(s.error_details())) {
    for (const peerpb::StatusPayload& p : details.details()) {
      out.SetPayload(p.type_url(), absl::Cord(p.value()));
    }
  }
  return out;
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  peerpb::StatusDetails details;
  s.ForEachPayload([&details](absl::string_view url, const absl::Cord& payload) {
    peerpb::StatusPayload* p = details.add_details();
    p->set_type_url(std::string(url));
    p->set_value(std::string(payload));
  });
  if (details.details_size() == 0) {
    return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
  }
  details.set_code(static_cast<int32_t>(s.code()));
  details.set_message(std::string(s.message()));
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()),
                      details.SerializeAsString());
}

bool RateLimiter::Allow(const std::string& key) {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> l(mu_);
  auto [it, inserted] = last_.emplace(key, now);
  if (inserted) return true;
  if (now - it->second < interval_) return false;
  it->second = now;
  return true;
}

std::string DescribeListenFailure(const PeerUrl& url) {
  std::string host = url.host;
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string prefix = absl::StrCat("listen tcp ", url.target, ": ");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url.port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return absl::StrCat(prefix, "lookup ", host, ": ", ::gai_strerror(rc));
  std::string err;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      // Go's wording: the errno text in lower case.
      std::string text = std::strerror(errno);
      if (!text.empty()) text[0] = static_cast<char>(std::tolower(text[0]));
      err = absl::StrCat(prefix, "bind: ", text);
      ::close(fd);
      break;
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (err.empty()) err = absl::StrCat(prefix, "failed to start the peer gRPC server");
  return err;
}

namespace {

// --peer-cert-allowed-cn / --peer-cert-allowed-hostname: every call on the
// peer port must come with a verified client certificate whose CN is the
// allowed one, or that names the allowed host (SAN or CN).
class AllowedPeerProcessor final : public grpc::AuthMetadataProcessor {
 public:
  AllowedPeerProcessor(std::string cn, std::string hostname)
      : cn_(std::move(cn)), hostname_(std::move(hostname)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata&, grpc::AuthContext* context, OutputMetadata*,
                       OutputMetadata*) override {
    auto has = [&](const char* property, const std::string& want) {
      for (const grpc::string_ref& v : context->FindPropertyValues(property)) {
        if (std::string(v.data(), v.size()) == want) return true;
      }
      return false;
    };
    if (!cn_.empty() && has("x509_common_name", cn_)) return grpc::Status::OK;
    if (!hostname_.empty() &&
        (has("x509_subject_alternative_name", hostname_) || has("x509_common_name", hostname_))) {
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        cn_.empty() ? "client certificate is not valid for the allowed hostname"
                                    : "CommonName authentication failed");
  }

 private:
  const std::string cn_;
  const std::string hostname_;
};

}  // namespace

absl::StatusOr<PeerCredentials> NewPeerCredentials(const util::TlsInfo& info,
                                                   const std::string& crl_directory) {
  if (info.Empty()) {
    return absl::InvalidArgumentError(
        "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided");
  }
  if (absl::Status st = util::ValidateTlsInfo(info); !st.ok()) return st;
  absl::StatusOr<std::string> cert = util::ReadPemFile(info.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = util::ReadPemFile(info.key_file);
  if (!key.ok()) return key.status();
  std::string ca;
  if (!info.trusted_ca_file.empty()) {
    absl::StatusOr<std::string> pem = util::ReadPemFile(info.trusted_ca_file);
    if (!pem.ok()) return pem.status();
    ca = *std::move(pem);
  }
  const grpc_ssl_client_certificate_request_type request_type =
      info.client_cert_auth ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  PeerCredentials out;
  if (!info.crl_file.empty()) {
    // gRPC enforces CRLs only through its TLS credentials' CRL directory
    // (hashed files; a certificate whose issuer has no CRL there passes).
    if (ca.empty()) {
      return absl::InvalidArgumentError("--peer-crl-file requires --peer-trusted-ca-file");
    }
    if (crl_directory.empty()) {
      return absl::InvalidArgumentError("peer CRL: no directory for the hashed CRL files");
    }
    if (absl::Status st = util::WriteCrlDirectory(info.crl_file, crl_directory); !st.ok()) {
      return st;
    }
    auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
        ca, std::vector<grpc::experimental::IdentityKeyCertPair>{{*key, *cert}});
    grpc::experimental::TlsServerCredentialsOptions server_opts(provider);
    server_opts.watch_root_certs();
    server_opts.watch_identity_key_cert_pairs();
    server_opts.set_cert_request_type(request_type);
    server_opts.set_crl_directory(crl_directory);
    out.server = grpc::experimental::TlsServerCredentials(server_opts);
    grpc::experimental::TlsChannelCredentialsOptions channel_opts;
    channel_opts.set_certificate_provider(provider);
    channel_opts.watch_root_certs();
    channel_opts.watch_identity_key_cert_pairs();
    channel_opts.set_verify_server_certs(true);
    channel_opts.set_certificate_verifier(
        std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
    channel_opts.set_crl_directory(crl_directory);
    out.channel = grpc::experimental::TlsCredentials(channel_opts);
  } else {
    grpc::SslServerCredentialsOptions server_opts(request_type);
    server_opts.pem_root_certs = ca;
    server_opts.pem_key_cert_pairs.push_back({*key, *cert});
    out.server = grpc::SslServerCredentials(server_opts);
    if (info.self_signed && ca.empty()) {
      // etcd skips server verification for self-signed (auto TLS) peers
      // when no CA is given.
      auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
          std::vector<grpc::experimental::IdentityKeyCertPair>{{*key, *cert}});
      grpc::experimental::TlsChannelCredentialsOptions opts;
      opts.set_certificate_provider(provider);
      opts.watch_identity_key_cert_pairs();
      opts.set_verify_server_certs(false);
      opts.set_check_call_host(false);
      opts.set_certificate_verifier(
          std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
      out.channel = grpc::experimental::TlsCredentials(opts);
    } else {
      // Verified against the CA, or, with none, the system's roots (Go's
      // TLS client with no RootCAs), host name included.
      grpc::SslCredentialsOptions channel_opts;
      channel_opts.pem_root_certs = ca;
      channel_opts.pem_cert_chain = *cert;
      channel_opts.pem_private_key = *key;
      out.channel = grpc::SslCredentials(channel_opts);
    }
  }
  if (out.server != nullptr && info.client_cert_auth &&
      (!info.allowed_cn.empty() || !info.allowed_hostname.empty())) {
    out.server->SetAuthMetadataProcessor(
        std::make_shared<AllowedPeerProcessor>(info.allowed_cn, info.allowed_hostname));
  }
  if (out.server == nullptr || out.channel == nullptr) {
    return absl::InternalError("cannot create peer TLS credentials");
  }
  return out;
}

}  // namespace cppetcd::transport
