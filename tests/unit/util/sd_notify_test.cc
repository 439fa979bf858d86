#include "cppetcd/util/sd_notify.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace cppetcd::util {
namespace {

// A datagram socket bound at `name` (a path, or an abstract name after '@'),
// standing in for the service manager's notification socket.
class NotifyListener {
 public:
  explicit NotifyListener(const std::string& name) : name_(name) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.data(), name.size());
    if (name[0] == '@') addr.sun_path[0] = '\0';
    const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    bound_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0;
  }
  ~NotifyListener() {
    if (fd_ >= 0) ::close(fd_);
    if (name_[0] == '/') ::unlink(name_.c_str());
  }
  bool bound() const { return bound_; }

  // The next datagram, or nullopt if none arrives within `timeout_ms`.
  std::optional<std::string> Receive(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  std::string name_;
  int fd_ = -1;
  bool bound_ = false;
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/sdnotifyXXXXXX";  // short: sun_path holds 108 bytes
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Sets an environment variable for one scope, restoring the old value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    if (old != nullptr) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(SdNotifyTest, SendsReadyToPathSocketFromEnvironment) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.path() + "/notify";
  NotifyListener listener(path);
  ASSERT_TRUE(listener.bound()) << std::strerror(errno);
  ScopedEnv env("NOTIFY_SOCKET", path);

  absl::StatusOr<bool> sent = SdNotify("READY=1\nSTATUS=serving");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_TRUE(*sent);
  EXPECT_EQ(listener.Receive(5000), "READY=1\nSTATUS=serving");

  // The variable stays set: a later notification reaches the manager too.
  sent = SdNotify("STOPPING=1");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(listener.Receive(5000), "STOPPING=1");
}

TEST(SdNotifyTest, SendsToAbstractSocket) {
  const std::string name = absl::StrCat("@cppetcd-sd-notify-test-", ::getpid());
  NotifyListener listener(name);
  ASSERT_TRUE(listener.bound()) << std::strerror(errno);

  absl::StatusOr<bool> sent = SdNotifyTo(name, "READY=1");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_TRUE(*sent);
  EXPECT_EQ(listener.Receive(5000), "READY=1");
}

TEST(SdNotifyTest, NoSocketIsNotAnError) {
  ScopedEnv env("NOTIFY_SOCKET", "");
  ::unsetenv("NOTIFY_SOCKET");
  absl::StatusOr<bool> sent = SdNotify("READY=1");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_FALSE(*sent);

  sent = SdNotifyTo("", "READY=1");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_FALSE(*sent);
}

TEST(SdNotifyTest, RejectsBadAddresses) {
  EXPECT_EQ(SdNotifyTo("relative/path", "READY=1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SdNotifyTo("/" + std::string(200, 'x'), "READY=1").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SdNotifyTest, MissingSocketIsUnavailable) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  absl::StatusOr<bool> sent = SdNotifyTo(dir.path() + "/nobody-listens", "READY=1");
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace cppetcd::util
