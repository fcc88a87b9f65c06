// The fleet shares one budget: 4 separate OS processes (tests/redis/
// budget_worker.cc) share a GlobalBudget of R writes/s through one real
// redis-server for 10 s while offering 3R in total. The total admitted must
// lie within [0.95 * 10 R, 1.05 * 10 R + overshoot bound], the bound being
// burst + instances * max_lease (spillway/leased_budget.h).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/redis/redis_server.h"

extern char** environ;

namespace spillway {
namespace {

struct Worker {
  pid_t pid = -1;
  int out = -1;  // Read end of the worker's stdout.
};

Worker Spawn(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::vector<char*> argv;
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  Worker w;
  if (posix_spawn(&w.pid, args[0].c_str(), &actions, nullptr, argv.data(),
                  environ) != 0) {
    w.pid = -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  w.out = fds[0];
  return w;
}

// Waits for the worker and returns its stdout; empty on failure.
std::string Collect(Worker& w) {
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(w.out, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(w.out);
  int status = 0;
  waitpid(w.pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "";
  return out;
}

int64_t Field(const std::string& line, absl::string_view name) {
  for (absl::string_view part : absl::StrSplit(line, absl::ByAnyChar(" \n"))) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    int64_t v = 0;
    if (kv.first == name && absl::SimpleAtoi(kv.second, &v)) return v;
  }
  return -1;
}

TEST(FleetAccuracyTest, FourProcessesShareOneBudget) {
  auto server = test::RedisServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  constexpr int kInstances = 4;
  constexpr double kRate = 2000;  // R, writes/s for the whole fleet.
  constexpr double kBurst = 200;
  constexpr double kSeconds = 10;
  const double offered_each = 3 * kRate / kInstances;
  const auto start = std::chrono::system_clock::now() + std::chrono::seconds(2);
  const int64_t start_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(
          start.time_since_epoch())
          .count();
  std::vector<Worker> workers;
  for (int i = 0; i < kInstances; ++i) {
    workers.push_back(Spawn(
        {SPILLWAY_BUDGET_WORKER, absl::StrCat((*server)->port()), "accuracy",
         absl::StrCat(kRate), absl::StrCat(kBurst), absl::StrCat(offered_each),
         absl::StrCat(start_ms), absl::StrCat(kSeconds * 1000)}));
    ASSERT_GT(workers.back().pid, 0);
  }
  int64_t admitted = 0;
  int64_t offered = 0;
  int64_t max_lease = 0;
  for (Worker& w : workers) {
    const std::string out = Collect(w);
    ASSERT_FALSE(out.empty()) << "a worker failed";
    admitted += Field(out, "admitted");
    offered += Field(out, "offered");
    max_lease = std::max(max_lease, Field(out, "max_lease"));
  }
  const double target = kRate * kSeconds;
  const double bound = kBurst + kInstances * max_lease;
  std::printf(
      "[ figure ] 4 processes, budget %.0f/s burst %.0f, %.0f s, offered "
      "%lld (%.2fx the budget): admitted %lld = %.2f%% of rate x time; "
      "allowed [%.0f, %.0f] (bound %.0f = burst + 4 x max_lease %lld)\n",
      kRate, kBurst, kSeconds, static_cast<long long>(offered),
      offered / target, static_cast<long long>(admitted),
      100.0 * admitted / target, 0.95 * target, 1.05 * target + bound, bound,
      static_cast<long long>(max_lease));
  EXPECT_GE(offered, 2.9 * target);
  EXPECT_GE(admitted, 0.95 * target);
  EXPECT_LE(admitted, 1.05 * target + bound);
}

}  // namespace
}  // namespace spillway
