#include "bench/pg_overload/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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
constexpr char kInstallRoot[] = "/usr/lib/postgresql";
// Safety timeouts: initdb takes about 1 s here, readiness about 0.2 s.
constexpr auto kCommandTimeout = std::chrono::seconds(120);
constexpr auto kReadyTimeout = std::chrono::seconds(60);
constexpr auto kStopTimeout = std::chrono::seconds(10);
// Attempts at a free port (another process may take the one we found
// between our probe and the server's bind).
constexpr int kPortAttempts = 10;
constexpr int kMaxConnections = 10000;

std::string ErrnoText(int err) { return std::strerror(err); }

// Whom the server's programs run as: initdb and postgres refuse root, so as
// root they run as `postgres` (what `runuser -u postgres` does); otherwise
// as ourselves.
struct RunAs {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

absl::StatusOr<RunAs> ServerUser() {
  if (geteuid() != 0) return RunAs{};
  passwd pw;
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  const int err =
      getpwnam_r("postgres", &pw, buffer.data(), buffer.size(), &found);
  if (err != 0 || found == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "running as root, and there is no `postgres` user to run initdb and "
        "postgres as (initdb refuses root): ",
        err != 0 ? ErrnoText(err) : "not in the user database",
        "; apt-get install postgresql creates it"));
  }
  return RunAs{true, pw.pw_uid, pw.pw_gid};
}

// The newest /usr/lib/postgresql/<version>/bin holding `postgres`.
absl::StatusOr<std::string> FindBinDir() {
  std::error_code ec;
  std::string best;
  std::vector<int> best_version;
  for (const auto& entry :
       std::filesystem::directory_iterator(kInstallRoot, ec)) {
    const std::string name = entry.path().filename().string();
    std::vector<int> version;
    bool numeric = true;
    for (absl::string_view part : absl::StrSplit(name, '.')) {
      int v = 0;
      numeric = numeric && absl::SimpleAtoi(part, &v);
      version.push_back(v);
    }
    const std::string bin = absl::StrCat(entry.path().string(), "/bin");
    if (!numeric || access(absl::StrCat(bin, "/postgres").c_str(), X_OK) != 0) {
      continue;
    }
    if (best.empty() || version > best_version) {
      best = bin;
      best_version = std::move(version);
    }
  }
  if (best.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no PostgreSQL server found under ", kInstallRoot,
                     "/*/bin (apt-get install postgresql)"));
  }
  return best;
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

// Waits for `pid` with `options` (retrying on EINTR).
pid_t WaitPid(pid_t pid, int* status, int options) {
  pid_t r;
  do {
    r = waitpid(pid, status, options);
  } while (r < 0 && errno == EINTR);
  return r;
}

// The last lines of a log file, for error messages.
std::string LogTail(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  constexpr size_t kTail = 20;
  const size_t from = lines.size() > kTail ? lines.size() - kTail : 0;
  return absl::StrJoin(lines.begin() + static_cast<std::ptrdiff_t>(from),
                       lines.end(), "\n");
}

// Starts `args` as a child process, as `user`, from `/`, with stdout and
// stderr appended to `log`. The child dies with the calling thread
// (PR_SET_PDEATHSIG), and keeps none of our descriptors.
absl::StatusOr<pid_t> SpawnChild(std::vector<std::string> args,
                                 const std::string& log, const RunAs& user) {
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
    // From `/`: the postgres user cannot read root's working directory.
    if (chdir("/") != 0) _exit(126);
    if (user.switch_user) {
      if (setgroups(0, nullptr) != 0 || setgid(user.gid) != 0 ||
          setuid(user.uid) != 0) {
        _exit(126);
      }
    }
    // Die with the test process, even if it crashes. Set after the user
    // switch, which clears it.
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
  return child;
}

// Runs `args` to completion (see SpawnChild); an error names `step` and
// shows the end of `log`.
absl::Status RunStep(absl::string_view step, std::vector<std::string> args,
                     const std::string& log, const RunAs& user) {
  absl::StatusOr<pid_t> child = SpawnChild(std::move(args), log, user);
  if (!child.ok()) {
    return absl::Status(child.status().code(),
                        absl::StrCat(step, ": ", child.status().message()));
  }
  const auto give_up = std::chrono::steady_clock::now() + kCommandTimeout;
  int wait_status = 0;
  while (WaitPid(*child, &wait_status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up) {
      kill(*child, SIGKILL);
      WaitPid(*child, nullptr, 0);
      return absl::DeadlineExceededError(
          absl::StrCat(step, " did not finish within ",
                       std::chrono::seconds(kCommandTimeout).count(),
                       " s; log ", log, " ends:\n", LogTail(log)));
    }
    // Real time only paces the polling of an external process.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    return absl::InternalError(absl::StrCat(step, " failed (wait status ",
                                            wait_status, "); log ", log,
                                            " ends:\n", LogTail(log)));
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const PostgresServerOptions& options) {
  if (options.max_connections < 1 ||
      options.max_connections > kMaxConnections) {
    return absl::InvalidArgumentError(
        absl::StrCat("PostgresServerOptions.max_connections must be in [1, ",
                     kMaxConnections, "]; got ", options.max_connections));
  }
  if (options.database.empty()) {
    return absl::InvalidArgumentError(
        "PostgresServerOptions.database must not be empty; got \"\"");
  }
  for (const std::string& setting : options.settings) {
    if (setting.find('=') == std::string::npos || setting[0] == '=' ||
        setting[0] == '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "PostgresServerOptions.settings must hold name=value; got \"",
          setting, "\""));
    }
  }
  return absl::OkStatus();
}

// A libpq connection-string value: quoted when it must be.
std::string ConninfoValue(absl::string_view value) {
  const bool plain = !value.empty() && value.find_first_of(" \t\n\r\f\v'\\") ==
                                           absl::string_view::npos;
  if (plain) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

}  // namespace

PostgresServer::PostgresServer(std::string dir, std::string bin_dir,
                               PostgresServerOptions options)
    : dir_(std::move(dir)),
      bin_dir_(std::move(bin_dir)),
      options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start(
    const PostgresServerOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  absl::StatusOr<std::string> bin_dir = FindBinDir();
  if (!bin_dir.ok()) return bin_dir.status();
  absl::StatusOr<RunAs> user = ServerUser();
  if (!user.ok()) return user.status();

  // Under /tmp, not $TMPDIR: the postgres user must be able to reach it.
  std::string dir = "/tmp/spillway-pg-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", dir, ": ", ErrnoText(errno)));
  }
  // From here on the destructor removes the directory (and stops the
  // server), whatever fails.
  std::unique_ptr<PostgresServer> server(
      new PostgresServer(dir, *bin_dir, options));
  if (user->switch_user && chown(dir.c_str(), user->uid, user->gid) != 0) {
    return absl::InternalError(
        absl::StrCat("chown ", dir, " to postgres: ", ErrnoText(errno)));
  }

  const std::string data = absl::StrCat(dir, "/data");
  if (absl::Status s =
          RunStep("initdb",
                  {absl::StrCat(*bin_dir, "/initdb"), "-D", data, "-U",
                   "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
                   "--no-sync", "--no-instructions"},
                  absl::StrCat(dir, "/initdb.log"), *user);
      !s.ok()) {
    return s;
  }

  absl::Status status;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    absl::StatusOr<int> port = FreePort();
    if (!port.ok()) return port.status();
    server->port_ = *port;
    status = server->Spawn();
    if (!absl::IsAborted(status)) break;  // Aborted: the port was taken.
  }
  if (!status.ok()) return status;

  if (options.database != "postgres") {
    // createdb takes the name as an argument: no SQL is built from it.
    if (absl::Status s = RunStep("createdb",
                                 {absl::StrCat(*bin_dir, "/createdb"), "-h",
                                  kLoopback, "-p", absl::StrCat(server->port_),
                                  "-U", "postgres", "--", options.database},
                                 absl::StrCat(dir, "/createdb.log"), *user);
        !s.ok()) {
      return s;
    }
  }
  return server;
}

PostgresServer::~PostgresServer() {
  StopNow();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string PostgresServer::ConnectionString() const {
  return absl::StrCat(
      "host=", kLoopback, " port=", port_,
      " user=postgres dbname=", ConninfoValue(options_.database));
}

absl::Status PostgresServer::Spawn() {
  absl::StatusOr<RunAs> user = ServerUser();
  if (!user.ok()) return user.status();
  const char* on_off = options_.fsync ? "on" : "off";
  std::vector<std::string> args = {
      absl::StrCat(bin_dir_, "/postgres"),
      "-D",
      absl::StrCat(dir_, "/data"),
      "-p",
      absl::StrCat(port_),
      "-k",
      dir_,
      "-c",
      absl::StrCat("listen_addresses=", kLoopback),
      "-c",
      absl::StrCat("fsync=", on_off),
      "-c",
      absl::StrCat("synchronous_commit=", on_off),
      "-c",
      absl::StrCat("full_page_writes=", on_off),
      "-c",
      absl::StrCat("max_connections=", options_.max_connections),
      "-c",
      "superuser_reserved_connections=0"};
  for (const std::string& setting : options_.settings) {
    args.push_back("-c");
    args.push_back(setting);
  }
  // A previous attempt's pid file would read as ready.
  std::error_code ignored;
  std::filesystem::remove(absl::StrCat(dir_, "/data/postmaster.pid"), ignored);
  absl::StatusOr<pid_t> child =
      SpawnChild(std::move(args), absl::StrCat(dir_, "/server.log"), *user);
  if (!child.ok()) return child.status();
  pid_ = *child;
  return WaitReady();
}

absl::Status PostgresServer::WaitReady() {
  const std::string pid_file = absl::StrCat(dir_, "/data/postmaster.pid");
  const std::string log = absl::StrCat(dir_, "/server.log");
  const auto give_up = std::chrono::steady_clock::now() + kReadyTimeout;
  while (std::chrono::steady_clock::now() < give_up) {
    int wait_status = 0;
    if (WaitPid(pid_, &wait_status, WNOHANG) == pid_) {
      pid_ = -1;
      const std::string tail = LogTail(log);
      if (absl::StrContains(tail, "Address already in use")) {
        return absl::AbortedError(
            absl::StrCat("postgres: port ", port_, " is taken"));
      }
      return absl::InternalError(
          absl::StrCat("postgres on port ", port_, " exited (wait status ",
                       wait_status, "); log ", log, " ends:\n", tail));
    }
    // postmaster.pid: line 1 is the pid, line 8 the status, "ready" once it
    // accepts connections (what `pg_ctl start -w` waits for).
    std::ifstream in(pid_file);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    if (lines.size() >= 8 && lines[0] == absl::StrCat(pid_) &&
        absl::StartsWith(lines[7], "ready")) {
      return absl::OkStatus();
    }
    // Real time only paces the polling of an external process.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  StopNow();
  return absl::DeadlineExceededError(
      absl::StrCat("postgres on port ", port_, " was not ready within ",
                   std::chrono::seconds(kReadyTimeout).count(), " s; log ", log,
                   " ends:\n", LogTail(log)));
}

void PostgresServer::StopNow() {
  if (pid_ <= 0) return;
  // Immediate shutdown: the postmaster tells its backends to quit and exits
  // without a checkpoint.
  kill(pid_, SIGQUIT);
  const auto give_up = std::chrono::steady_clock::now() + kStopTimeout;
  while (WaitPid(pid_, nullptr, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up) {
      kill(pid_, SIGKILL);
      WaitPid(pid_, nullptr, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  pid_ = -1;
}

}  // namespace spillway::test
