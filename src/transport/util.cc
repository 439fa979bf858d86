// Peer URL parsing, status conversion, listen-failure wording, rate limiter,
// peer TLS credentials. Files (the TLS mirror, the CRL directory and its
// link) go through util::Env; the descriptors here are sockets.
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "cppetcd/util/env.h"
#include "src/transport/impl.h"

#include <openssl/ssl.h>

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
  } else if (absl::StartsWith(url, "unix://") || absl::StartsWith(url, "unixs://")) {
    out.secure = absl::StartsWith(url, "unixs://");
    rest = url.substr(out.secure ? 8 : 7);
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    if (rest.empty() || rest.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("invalid unix socket URL: ", url));
    }
    out.unix_path = rest;
    out.host = rest;
    out.target = absl::StrCat("unix:", rest);  // gRPC: a path relative to the working directory
    return out;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("URL scheme must be http, https, unix or unixs: ", url));
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
  // Real time: a log rate limit, not behaviour.
  const Clock::time_point now = Clock::now();
  util::MutexLock l(&mu_);
  auto [it, inserted] = last_.emplace(key, now);
  if (inserted) return true;
  if (now - it->second < interval_) return false;
  it->second = now;
  return true;
}

std::string DescribeListenFailure(const PeerUrl& url) {
  if (!url.unix_path.empty()) {
    const std::string prefix = absl::StrCat("listen unix ", url.unix_path, ": ");
    sockaddr_un addr{};
    if (url.unix_path.size() >= sizeof(addr.sun_path)) {
      return absl::StrCat(prefix, "bind: invalid argument");
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, url.unix_path.data(), url.unix_path.size());
    std::string err = absl::StrCat(prefix, "failed to start the peer gRPC server");
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
        std::string text = std::strerror(errno);
        if (!text.empty()) text[0] = static_cast<char>(std::tolower(text[0]));
        err = absl::StrCat(prefix, "bind: ", text);
      } else {
        ::unlink(url.unix_path.c_str());
      }
      ::close(fd);
    }
    return err;
  }
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

// --peer-cert-allowed-cn / --peer-cert-allowed-hostname, checked on the
// certificate the other member presents when a connection is set up (gRPC's
// security handshake, right after the TLS handshake, before any call): on
// the listener side its client certificate, on the dialing side its server
// certificate, as etcd's TLS config checks both. A refused certificate ends
// the connection with etcd's error, logged as "rejected connection" (at
// most once a second per side and CN: members redial every backoff).
// `hostname` (dialing side only): gRPC's host name check, done first.
class AllowedPeerVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  AllowedPeerVerifier(util::TlsInfo info, bool dialing,
                      std::shared_ptr<grpc::experimental::CertificateVerifier> hostname,
                      util::Logger logger)
      : info_(std::move(info)),
        dialing_(dialing),
        hostname_(std::move(hostname)),
        logger_(std::move(logger)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    if (hostname_ != nullptr) {
      // gRPC's HostNameCertificateVerifier answers synchronously.
      if (!hostname_->Verify(request, [](grpc::Status) {}, sync_status)) {
        *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                    "host name verification did not complete");
        return true;
      }
      if (!sync_status->ok()) return true;
    }
    const grpc::string_ref pem = request->peer_cert();
    const std::string_view cert(pem.data(), pem.size());
    const absl::Status st = util::CheckCertificateIdentity(info_, cert);
    if (st.ok()) {
      *sync_status = grpc::Status::OK;
      return true;
    }
    const std::string cn = util::CertificateCommonName(cert).value_or("");
    if (limiter_.Allow(cn)) {
      const grpc::string_ref target = request->target_name();
      const char* allowed_key = info_.allowed_cn.empty() ? "allowed-hostname" : "allowed-cn";
      const std::string& allowed =
          info_.allowed_cn.empty() ? info_.allowed_hostname : info_.allowed_cn;
      if (dialing_) {
        // The peer's server certificate, for the URL host dialed.
        logger_.Warn("rejected connection",
                     {{"remote-peer-host", std::string(target.data(), target.size())},
                      {"server-certificate-cn", cn},
                      {allowed_key, allowed},
                      {"error", std::string(st.message())}});
      } else {
        logger_.Warn("rejected connection", {{"client-certificate-cn", cn},
                                             {allowed_key, allowed},
                                             {"error", std::string(st.message())}});
      }
    }
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(st.message()));
    return true;
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const util::TlsInfo info_;
  const bool dialing_;
  const std::shared_ptr<grpc::experimental::CertificateVerifier> hostname_;
  util::Logger logger_;
  RateLimiter limiter_{std::chrono::seconds(1)};
};

// The contents of a certificate, key and CA file ("" without a CA file).
struct PemSet {
  std::string cert, key, ca;
};
absl::StatusOr<PemSet> ReadPemSet(const util::TlsInfo& info) {
  PemSet out;
  for (auto [path, to] : {std::pair{&info.cert_file, &out.cert}, std::pair{&info.key_file, &out.key},
                          std::pair{&info.trusted_ca_file, &out.ca}}) {
    if (path->empty() && to == &out.ca) continue;
    absl::StatusOr<std::string> pem = util::ReadPemFile(*path, util::Env::Default());
    if (!pem.ok()) return pem.status();
    *to = *std::move(pem);
  }
  return out;
}

// The last component of `path`.
std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The operator's certificate, key and CA files (peer port, or the gRPC-only
// client URLs; `what` says which in the log lines) mirrored into a private
// directory for gRPC's file watcher, which would otherwise load a key and a
// certificate that do not match (one replaced, the other not yet) and fail
// every handshake until both are. A set is copied only once it validates;
// the key and the certificate go into one file (gRPC reads the key and the
// chain out of it), so the watcher always reads a matching pair.
class PeerTlsFiles {
 public:
  // Copies the current set (which the caller has validated) and starts the
  // thread that looks again every `interval`.
  // With a --peer-crl-file, `crl_dir` is the path gRPC reads hashed CRLs
  // from: a symbolic link, swapped to a new generation directory when the
  // file changes (an earlier real directory there is replaced).
  static absl::StatusOr<std::shared_ptr<PeerTlsFiles>> Start(const util::TlsInfo& info,
                                                             const std::string& dir,
                                                             const std::string& crl_dir,
                                                             std::chrono::milliseconds interval,
                                                             std::string what,
                                                             util::Logger logger) {
    util::Env* env = util::Env::Default();
    if (absl::Status st = env->CreateDirAll(dir); !st.ok()) return st;
    std::shared_ptr<PeerTlsFiles> f(
        new PeerTlsFiles(info, dir, crl_dir, interval, std::move(what), std::move(logger)));
    if (!info.crl_file.empty()) {
      if (env->IsDirectory(crl_dir) && !env->IsSymlink(crl_dir)) {
        // An older start's real directory.
        if (absl::Status st = env->RemoveAll(crl_dir); !st.ok()) {
          return absl::InternalError(absl::StrCat("cannot replace ", crl_dir, ": ", st.message()));
        }
      }
      // Generations of an earlier start.
      const std::string parent = util::DirName(crl_dir);
      const std::string prefix = BaseName(crl_dir) + ".g";
      if (auto names = env->GetChildren(parent); names.ok()) {
        for (const std::string& name : *names) {
          if (name.starts_with(prefix)) env->RemoveAll(util::JoinPath(parent, name)).IgnoreError();
        }
      }
    }
    absl::StatusOr<bool> first = f->Sync();
    if (!first.ok()) return first.status();
    f->thread_ = std::thread([raw = f.get()] { raw->Run(); });
    return f;
  }

  ~PeerTlsFiles() {
    {
      util::MutexLock l(&mu_);
      stop_ = true;
    }
    cv_.SignalAll();
    if (thread_.joinable()) thread_.join();
  }

  std::string identity_path() const { return dir_ + "/identity.pem"; }
  std::string ca_path() const { return info_.trusted_ca_file.empty() ? "" : dir_ + "/ca.pem"; }

 private:
  PeerTlsFiles(const util::TlsInfo& info, std::string dir, std::string crl_dir,
               std::chrono::milliseconds interval, std::string what, util::Logger logger)
      : info_(info),
        dir_(std::move(dir)),
        crl_dir_(std::move(crl_dir)),
        interval_(interval),
        what_(std::move(what)),
        logger_(std::move(logger)) {}

  // Makes `crl_dir_` show the CRLs of `crl` (the file's bytes): a new
  // generation directory, then the link swapped by a rename, so a handshake
  // sees the old set or the new one, never none. Older generations go.
  absl::Status InstallCrl(const std::string& crl) {
    const uint64_t gen = ++crl_generation_;
    const std::string target = absl::StrCat(crl_dir_, ".g", gen);
    // Validate and write the bytes read (the file may change meanwhile).
    const std::string staged = dir_ + "/staged-crl";
    if (absl::Status st = Replace(staged, crl); !st.ok()) return st;
    absl::Status st = util::WriteCrlDirectory(staged, target, env_);
    env_->RemoveFile(staged).IgnoreError();
    if (!st.ok()) {
      env_->RemoveAll(target).IgnoreError();
      return absl::Status(st.code(),
                          absl::StrReplaceAll(st.message(), {{staged, info_.crl_file}}));
    }
    const std::string link_tmp = crl_dir_ + ".link";
    env_->RemoveFile(link_tmp).IgnoreError();
    st = env_->CreateSymlink(BaseName(target), link_tmp);
    if (st.ok()) st = env_->RenameFile(link_tmp, crl_dir_);
    if (!st.ok()) {
      env_->RemoveFile(link_tmp).IgnoreError();
      env_->RemoveAll(target).IgnoreError();
      return absl::InternalError(absl::StrCat("cannot switch ", crl_dir_, " to ", target, ": ",
                                              st.message()));
    }
    // The generation before stays for a handshake that resolved the link
    // just before the swap.
    if (gen > 2) env_->RemoveAll(absl::StrCat(crl_dir_, ".g", gen - 2)).IgnoreError();
    return absl::OkStatus();
  }

  void Run() {
    util::MutexLock l(&mu_);
    // Real time: a file watcher's period, like gRPC's own watcher.
    while (!cv_.WaitFor(&mu_, interval_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; })) {
      l.Unlock();
      absl::StatusOr<bool> changed = Sync();
      if (!changed.ok()) {
        // Once per distinct failure: the operator may take minutes.
        if (changed.status().ToString() != last_error_) {
          last_error_ = changed.status().ToString();
          logger_.Warn(absl::StrCat("cannot reload the ", what_, " TLS certificate files"),
                       {{"error", last_error_}});
        }
      } else if (*changed) {
        last_error_.clear();
        logger_.Info(absl::StrCat("reloaded the ", what_, " TLS certificate files"),
                     {{"cert-file", info_.cert_file}, {"key-file", info_.key_file},
                      {"trusted-ca-file", info_.trusted_ca_file},
                      {"crl-file", info_.crl_file}});
      }
      l.Lock();
    }
  }

  // Copies the operator's files when they changed and validate; true when
  // copied.
  absl::StatusOr<bool> Sync() {
    absl::StatusOr<PemSet> read = ReadPemSet(info_);
    if (!read.ok()) return read.status();
    std::string* cert = &read->cert;
    std::string* key = &read->key;
    std::string& ca = read->ca;
    std::string crl;
    if (!info_.crl_file.empty()) {
      absl::StatusOr<std::string> c = util::ReadPemFile(info_.crl_file, env_);
      if (!c.ok()) return c.status();
      crl = *std::move(c);
    }
    if (*cert == cert_ && *key == key_ && ca == ca_ && crl == crl_) return false;
    // Validate the bytes read, not the files again (they may change
    // meanwhile): staged copies, checked as the start-up check does.
    util::TlsInfo staged;
    staged.cert_file = dir_ + "/staged-cert.pem";
    staged.key_file = dir_ + "/staged-key.pem";
    if (!ca.empty()) staged.trusted_ca_file = dir_ + "/staged-ca.pem";
    absl::Status st = Replace(staged.cert_file, *cert);
    if (st.ok()) st = Replace(staged.key_file, *key);
    if (st.ok() && !ca.empty()) st = Replace(staged.trusted_ca_file, ca);
    if (st.ok()) st = util::ValidateTlsInfo(staged);
    const bool crl_changed = !info_.crl_file.empty() && crl != crl_;
    if (st.ok() && crl_changed) st = InstallCrl(crl);
    // gRPC reads the CRL directory into each TLS context it builds, and
    // builds one when the certificates it watches change: the CA mirror
    // carries the CRL's generation in a comment line (outside the PEM
    // blocks) so that a new CRL makes it build the next one.
    const std::string ca_mirror =
        info_.crl_file.empty() ? ca : absl::StrCat(ca, "\n# ", what_, " CRL generation ", crl_generation_, "\n");
    if (st.ok() && !ca.empty() && (ca != ca_ || crl_changed)) st = Replace(ca_path(), ca_mirror);
    if (st.ok() && (*cert != cert_ || *key != key_)) {
      st = Replace(identity_path(), absl::StrCat(*key, "\n", *cert));
    }
    for (const std::string& f : {staged.cert_file, staged.key_file, staged.trusted_ca_file}) {
      if (!f.empty()) env_->RemoveFile(f).IgnoreError();
    }
    if (!st.ok()) {
      if (absl::IsInvalidArgument(st)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the files do not form a valid set (kept the last good one): ",
            absl::StrReplaceAll(st.message(), {{staged.cert_file, info_.cert_file},
                                               {staged.key_file, info_.key_file},
                                               {staged.trusted_ca_file, info_.trusted_ca_file}})));
      }
      return st;
    }
    cert_ = std::move(*cert);
    key_ = std::move(*key);
    ca_ = std::move(ca);
    crl_ = std::move(crl);
    return true;
  }

  const util::TlsInfo info_;
  // Files are written through a temporary file and a rename (mode 0600).
  absl::Status Replace(const std::string& path, const std::string& data) {
    return util::WriteFileAtomically(env_, path, data);
  }

  // Every file of the mirror goes through it (the process's default Env).
  util::Env* const env_ = util::Env::Default();

  const std::string dir_;
  const std::string crl_dir_;  // with a CRL file: gRPC's CRL directory (a link)
  const std::chrono::milliseconds interval_;
  const std::string what_;  // "peer" or "client"
  util::Logger logger_;
  std::string cert_, key_, ca_, crl_;  // the set last copied (Sync's thread only)
  uint64_t crl_generation_ = 0;        // Sync's thread only
  std::string last_error_;       // Run's thread only
  util::Mutex mu_;
  util::CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

// How often the peer credentials look at their files again.
constexpr std::chrono::milliseconds kPeerTlsRefresh{1000};
// gRPC's file watcher's interval, in seconds: it follows the mirror.
constexpr unsigned int kPeerTlsWatchSeconds = 1;

namespace {

// OpenSSL calls this for every SSL object as it is created (an ex_data
// "new" callback), gRPC's included: gRPC gives no access to its SSL_CTX,
// and does not set SSL_MODE_RELEASE_BUFFERS itself, so an idle TLS
// connection would keep its two record buffers (about 17 KiB each) for its
// whole life. With the mode they are freed whenever empty and taken again
// for the next record.
void ReleaseBuffersOnNewSsl(void* parent, void* /*ptr*/, CRYPTO_EX_DATA* /*ad*/, int /*idx*/,
                            long /*argl*/, void* /*argp*/) {
  if (parent != nullptr) SSL_set_mode(static_cast<SSL*>(parent), SSL_MODE_RELEASE_BUFFERS);
}

// Installs ReleaseBuffersOnNewSsl once per process, before gRPC's first
// TLS handshake (credentials are made before any server or channel).
void ReleaseIdleTlsBuffers() {
  static const int index = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, nullptr,
                                                   ReleaseBuffersOnNewSsl, nullptr, nullptr);
  (void)index;
}

// NewPeerCredentials for the peer port (`client` false) or the server side
// only for the gRPC-only client URLs (`client` true: the client flags'
// names in errors and "client" in log lines; no channel credentials).
absl::StatusOr<PeerCredentials> NewTlsCredentials(const util::TlsInfo& info,
                                                  const std::string& crl_directory,
                                                  const std::string& files_directory,
                                                  util::Logger logger, bool client) {
  const std::string what = client ? "client" : "peer";
  const std::string flag = client ? "--" : "--peer-";
  ReleaseIdleTlsBuffers();
  if (info.Empty()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key/cert (", flag, "cert-file, ", flag,
                                                   "key-file) must be provided"));
  }
  if (absl::Status st = util::ValidateTlsInfo(info); !st.ok()) return st;
  absl::StatusOr<PemSet> read = ReadPemSet(info);
  if (!read.ok()) return read.status();
  const std::string* cert = &read->cert;
  const std::string* key = &read->key;
  const std::string& ca = read->ca;
  const grpc_ssl_client_certificate_request_type request_type =
      info.client_cert_auth ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  if (!info.crl_file.empty()) {
    // gRPC enforces CRLs only through its TLS credentials' CRL directory
    // (hashed files; a certificate whose issuer has no CRL there passes).
    if (ca.empty()) {
      return absl::InvalidArgumentError(client ? "--client-crl-file requires --trusted-ca-file"
                                               : "--peer-crl-file requires --peer-trusted-ca-file");
    }
    if (crl_directory.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " CRL: no directory for the hashed CRL files"));
    }
    // With a files directory, PeerTlsFiles writes (and rewrites) it.
    if (files_directory.empty()) {
      if (absl::Status st = util::WriteCrlDirectory(info.crl_file, crl_directory); !st.ok()) {
        return st;
      }
    }
  }
  PeerCredentials out;
  const bool identity = !info.allowed_cn.empty() || !info.allowed_hostname.empty();
  const bool self_signed_no_ca = info.self_signed && ca.empty();
  // gRPC's TLS credentials. With a files directory, over gRPC's file
  // watcher on the mirrored files: new peer connections use the operator's
  // files as they are on disk (etcd re-reads them per handshake), checked
  // every second; otherwise the files as read now.
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (!files_directory.empty()) {
    absl::StatusOr<std::shared_ptr<PeerTlsFiles>> files =
        PeerTlsFiles::Start(info, files_directory, crl_directory, kPeerTlsRefresh, what, logger);
    if (!files.ok()) return files.status();
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        (*files)->identity_path(), (*files)->identity_path(), (*files)->ca_path(),
        kPeerTlsWatchSeconds);
    out.files = *std::move(files);
  } else {
    const std::vector<grpc::experimental::IdentityKeyCertPair> identity_pair = {{*key, *cert}};
    provider = ca.empty()
                   ? std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
                         identity_pair)
                   : std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
                         ca, identity_pair);
  }
  if (info.client_cert_auth && ca.empty()) {
    // Client certificates verified against the system's roots (Go's server
    // with no ClientCAs): gRPC's TLS credentials verify only against the
    // provider's roots, so this rare set-up keeps the SSL credentials and
    // reads its files at start-up only.
    grpc::SslServerCredentialsOptions server_opts(request_type);
    server_opts.pem_key_cert_pairs.push_back({*key, *cert});
    out.server = grpc::SslServerCredentials(server_opts);
  } else {
    grpc::experimental::TlsServerCredentialsOptions server_opts(provider);
    if (!ca.empty()) server_opts.watch_root_certs();
    server_opts.watch_identity_key_cert_pairs();
    server_opts.set_cert_request_type(request_type);
    if (!info.crl_file.empty()) server_opts.set_crl_directory(crl_directory);
    // Without client_cert_auth no client certificate is asked for, and
    // etcd checks allowed_cn / allowed_hostname only on a requested one.
    if (identity && info.client_cert_auth) {
      server_opts.set_certificate_verifier(
          grpc::experimental::ExternalCertificateVerifier::Create<AllowedPeerVerifier>(
              info, false, nullptr, logger));
    }
    out.server = grpc::experimental::TlsServerCredentials(server_opts);
  }
  if (client) {
    if (out.server == nullptr) return absl::InternalError("cannot create client TLS credentials");
    return out;
  }
  grpc::experimental::TlsChannelCredentialsOptions channel_opts;
  channel_opts.set_certificate_provider(provider);
  // No CA: the server is verified against the system's roots (Go's TLS
  // client with no RootCAs), which gRPC uses when no roots are watched.
  if (!ca.empty()) channel_opts.watch_root_certs();
  channel_opts.watch_identity_key_cert_pairs();
  if (!info.crl_file.empty()) channel_opts.set_crl_directory(crl_directory);
  std::shared_ptr<grpc::experimental::CertificateVerifier> hostname;
  if (self_signed_no_ca) {
    // etcd skips server verification for self-signed (auto TLS) peers
    // when no CA is given.
    channel_opts.set_verify_server_certs(false);
    channel_opts.set_check_call_host(false);
  } else {
    channel_opts.set_verify_server_certs(true);
    hostname = std::make_shared<grpc::experimental::HostNameCertificateVerifier>();
  }
  if (identity) {
    channel_opts.set_certificate_verifier(
        grpc::experimental::ExternalCertificateVerifier::Create<AllowedPeerVerifier>(
            info, true, hostname, logger));
  } else if (hostname != nullptr) {
    channel_opts.set_certificate_verifier(hostname);
  } else {
    channel_opts.set_certificate_verifier(
        std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  }
  out.channel = grpc::experimental::TlsCredentials(channel_opts);
  if (out.server == nullptr || out.channel == nullptr) {
    return absl::InternalError("cannot create peer TLS credentials");
  }
  return out;
}

}  // namespace

absl::StatusOr<PeerCredentials> NewPeerCredentials(const util::TlsInfo& info,
                                                   const std::string& crl_directory,
                                                   const std::string& files_directory,
                                                   util::Logger logger) {
  return NewTlsCredentials(info, crl_directory, files_directory, std::move(logger), false);
}

absl::StatusOr<PeerCredentials> NewClientServerCredentials(const util::TlsInfo& info,
                                                           const std::string& crl_directory,
                                                           const std::string& files_directory,
                                                           util::Logger logger) {
  return NewTlsCredentials(info, crl_directory, files_directory, std::move(logger), true);
}

}  // namespace cppetcd::transport
