#include "tests/redis/redis_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace spillway::test {
namespace {

constexpr char kLoopback[] = "127.0.0.1";
// Safety timeout for a server to answer PING; it takes ~20 ms here.
constexpr auto kReadyTimeout = std::chrono::seconds(10);
// Attempts at a free port (another process may take the one we found
// between our probe and the server's bind).
constexpr int kPortAttempts = 10;

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string ErrnoText(int err) { return std::strerror(err); }

// The redis-server binary: the first on PATH, else /usr/bin/redis-server.
absl::StatusOr<std::string> FindRedisServer() {
  const char* path = std::getenv("PATH");
  if (path != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path, ':')) {
      if (dir.empty()) continue;
      std::string candidate = absl::StrCat(dir, "/redis-server");
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  if (access("/usr/bin/redis-server", X_OK) == 0) {
    return std::string("/usr/bin/redis-server");
  }
  return absl::NotFoundError(
      "redis-server not found on PATH nor in /usr/bin (apt-get install "
      "redis-server)");
}

// A port that was free on 127.0.0.1 a moment ago.
absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", ErrnoText(errno)));
  }
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("bind 127.0.0.1:0: ", ErrnoText(err)));
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

// Connects to 127.0.0.1:port, authenticating with `password` if not empty.
absl::StatusOr<ContextPtr> Dial(int port, const std::string& password,
                                std::chrono::milliseconds timeout) {
  ContextPtr ctx(redisConnectWithTimeout(kLoopback, port, ToTimeval(timeout)));
  if (ctx == nullptr) return absl::UnavailableError("out of memory");
  if (ctx->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect to 127.0.0.1:", port, ": ", ctx->errstr));
  }
  if (redisSetTimeout(ctx.get(), ToTimeval(timeout)) != REDIS_OK) {
    return absl::UnavailableError(absl::StrCat("set timeout: ", ctx->errstr));
  }
  if (!password.empty()) {
    const char* argv[] = {"AUTH", password.data()};
    const size_t lens[] = {4, password.size()};
    ReplyPtr reply(
        static_cast<redisReply*>(redisCommandArgv(ctx.get(), 2, argv, lens)));
    if (reply == nullptr) {
      return absl::UnavailableError(absl::StrCat("AUTH: ", ctx->errstr));
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      return absl::UnauthenticatedError(
          absl::StrCat("AUTH: ", std::string(reply->str, reply->len)));
    }
  }
  return ctx;
}

// Sends argv on `ctx`; an error reply becomes Internal.
absl::StatusOr<ReplyPtr> Run(redisContext* ctx,
                             const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  ReplyPtr reply(static_cast<redisReply*>(redisCommandArgv(
      ctx, static_cast<int>(argv.size()), args.data(), lens.data())));
  if (reply == nullptr) {
    return absl::UnavailableError(absl::StrCat(argv[0], ": ", ctx->errstr));
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(
        absl::StrCat(argv[0], ": ", std::string(reply->str, reply->len)));
  }
  return reply;
}

void AppendText(const redisReply& reply, std::vector<std::string>& out) {
  switch (reply.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      out.emplace_back(reply.str, reply.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.push_back(absl::StrCat(reply.integer));
      break;
    case REDIS_REPLY_NIL:
      out.push_back("(nil)");
      break;
    case REDIS_REPLY_ARRAY:
      for (size_t i = 0; i < reply.elements; ++i) {
        AppendText(*reply.element[i], out);
      }
      break;
    default:
      out.push_back(absl::StrCat("(reply type ", reply.type, ")"));
  }
}

// Waits for `pid` with `options` (retrying on EINTR).
pid_t WaitPid(pid_t pid, int* status, int options) {
  pid_t r;
  do {
    r = waitpid(pid, status, options);
  } while (r < 0 && errno == EINTR);
  return r;
}

}  // namespace

RedisServer::RedisServer(std::string dir, std::vector<std::string> extra_args)
    : dir_(std::move(dir)), extra_args_(std::move(extra_args)) {
  for (size_t i = 0; i + 1 < extra_args_.size(); ++i) {
    if (extra_args_[i] == "--requirepass") password_ = extra_args_[i + 1];
  }
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(
    std::vector<std::string> extra_args) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp",
                   "/spillway-redis-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", pattern, ": ", ErrnoText(errno)));
  }
  std::unique_ptr<RedisServer> server(
      new RedisServer(pattern, std::move(extra_args)));
  absl::Status status;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    absl::StatusOr<int> port = FreePort();
    if (!port.ok()) return port.status();
    server->port_ = *port;
    status = server->Spawn();
    if (!absl::IsAborted(status)) break;  // Aborted: the port was taken.
  }
  if (!status.ok()) return status;
  return server;
}

RedisServer::~RedisServer() {
  KillNow();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string RedisServer::address() const {
  return absl::StrCat(kLoopback, ":", port_);
}

absl::Status RedisServer::Spawn() {
  absl::StatusOr<std::string> binary = FindRedisServer();
  if (!binary.ok()) return binary.status();
  const std::string log = absl::StrCat(dir_, "/redis.log");
  std::vector<std::string> args = {
      *binary,       "--bind", kLoopback, "--port",    absl::StrCat(port_),
      "--daemonize", "no",     "--save",  "",          "--appendonly",
      "no",          "--dir",  dir_,      "--logfile", log};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  // Everything the child needs is prepared here: between fork and exec only
  // async-signal-safe calls are allowed.
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log_fd =
      open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("open ", log, ": ", ErrnoText(errno)));
  }
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) {
    const int err = errno;
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", ErrnoText(err)));
  }
  if (child == 0) {
    // Die with the test process, even if it crashes.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    // Keep no descriptor of the test (its client sockets would otherwise
    // stay open in the server).
    if (close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 1024; ++fd) close(fd);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  pid_ = child;
  frozen_ = false;
  return WaitReady();
}

absl::Status RedisServer::WaitReady() {
  const auto give_up = std::chrono::steady_clock::now() + kReadyTimeout;
  std::string last_error = "not polled yet";
  while (std::chrono::steady_clock::now() < give_up) {
    int wait_status = 0;
    if (WaitPid(pid_, &wait_status, WNOHANG) == pid_) {
      pid_ = -1;
      const std::string tail = LogTail();
      if (absl::StrContains(tail, "Address already in use")) {
        return absl::AbortedError(
            absl::StrCat("redis-server: port ", port_, " is taken"));
      }
      return absl::InternalError(absl::StrCat(
          "redis-server on port ", port_, " exited (status ", wait_status,
          "); log ", dir_, "/redis.log ends:\n", tail));
    }
    absl::StatusOr<ContextPtr> ctx =
        Dial(port_, password_, std::chrono::milliseconds(500));
    if (ctx.ok()) {
      // Another process may own the port (then our server exits with
      // "Address already in use"): only our own pid counts as ready.
      absl::StatusOr<ReplyPtr> info = Run(ctx->get(), {"INFO", "server"});
      if (info.ok() && (*info)->type == REDIS_REPLY_STRING) {
        const std::string text((*info)->str, (*info)->len);
        const std::string mine = absl::StrCat("process_id:", pid_, "\r");
        absl::StatusOr<ReplyPtr> pong = Run(ctx->get(), {"PING"});
        if (absl::StrContains(text, mine) && pong.ok() &&
            (*pong)->type == REDIS_REPLY_STATUS &&
            absl::string_view((*pong)->str, (*pong)->len) == "PONG") {
          return absl::OkStatus();
        }
        last_error = "another process answers on the port";
      } else {
        last_error =
            info.ok() ? "INFO: not a string" : info.status().ToString();
      }
    } else {
      last_error = ctx.status().ToString();
    }
    // Real time only paces the polling of an external process.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  KillNow();
  return absl::DeadlineExceededError(absl::StrCat(
      "redis-server on port ", port_, " did not answer PING within 10 s (",
      last_error, "); log ends:\n", LogTail()));
}

void RedisServer::KillNow() {
  if (pid_ <= 0) return;
  if (frozen_) kill(pid_, SIGCONT);
  kill(pid_, SIGKILL);
  WaitPid(pid_, nullptr, 0);
  pid_ = -1;
  frozen_ = false;
}

absl::Status RedisServer::Kill() {
  if (pid_ <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "RedisServer::Kill: the server on port ", port_, " is not running"));
  }
  KillNow();
  return absl::OkStatus();
}

absl::Status RedisServer::Restart() {
  KillNow();
  absl::Status status;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    status = Spawn();
    if (!absl::IsAborted(status)) return status;
    // The port is busy: wait for whoever holds it, briefly.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return status;
}

absl::Status RedisServer::Freeze() {
  if (pid_ <= 0 || frozen_) {
    return absl::FailedPreconditionError(
        absl::StrCat("RedisServer::Freeze: the server on port ", port_,
                     frozen_ ? " is already frozen" : " is not running"));
  }
  if (kill(pid_, SIGSTOP) != 0) {
    return absl::InternalError(
        absl::StrCat("kill SIGSTOP: ", ErrnoText(errno)));
  }
  int wait_status = 0;
  if (WaitPid(pid_, &wait_status, WUNTRACED) != pid_ ||
      !WIFSTOPPED(wait_status)) {
    return absl::InternalError(
        absl::StrCat("RedisServer::Freeze: redis-server did not stop (status ",
                     wait_status, ")"));
  }
  frozen_ = true;
  return absl::OkStatus();
}

absl::Status RedisServer::Thaw() {
  if (pid_ <= 0 || !frozen_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "RedisServer::Thaw: the server on port ", port_, " is not frozen"));
  }
  if (kill(pid_, SIGCONT) != 0) {
    return absl::InternalError(
        absl::StrCat("kill SIGCONT: ", ErrnoText(errno)));
  }
  int wait_status = 0;
  if (WaitPid(pid_, &wait_status, WCONTINUED) != pid_ ||
      !WIFCONTINUED(wait_status)) {
    return absl::InternalError(absl::StrCat(
        "RedisServer::Thaw: redis-server did not continue (status ",
        wait_status, ")"));
  }
  frozen_ = false;
  return absl::OkStatus();
}

absl::StatusOr<std::string> RedisServer::Command(
    std::vector<std::string> argv) {
  if (argv.empty()) {
    return absl::InvalidArgumentError("RedisServer::Command: empty argv");
  }
  absl::StatusOr<ContextPtr> ctx =
      Dial(port_, password_, std::chrono::milliseconds(5000));
  if (!ctx.ok()) {
    return absl::Status(
        ctx.status().code(),
        absl::StrCat("redis ", address(), ": ", ctx.status().message()));
  }
  absl::StatusOr<ReplyPtr> reply = Run(ctx->get(), argv);
  if (!reply.ok()) {
    return absl::Status(
        reply.status().code(),
        absl::StrCat("redis ", address(), " ", reply.status().message()));
  }
  std::vector<std::string> parts;
  AppendText(**reply, parts);
  return absl::StrJoin(parts, "\n");
}

std::string RedisServer::LogTail() const {
  std::ifstream in(absl::StrCat(dir_, "/redis.log"));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  constexpr size_t kTail = 20;
  const size_t from = lines.size() > kTail ? lines.size() - kTail : 0;
  return absl::StrJoin(lines.begin() + static_cast<std::ptrdiff_t>(from),
                       lines.end(), "\n");
}

}  // namespace spillway::test
