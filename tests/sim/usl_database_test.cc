// The database model of the overload simulator: the Universal Scalability
// Law and processor sharing, on hand-computed cases.

#include "bench/sim/usl_database.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spillway::sim {
namespace {

using ::testing::HasSubstr;

// Default options: lambda 200/s, sigma 0.05, kappa 0.002.
const DatabaseOptions kDefaults;

// lambda = 1, sigma = 0, kappa = 0.5: the rate per write is
// 1 / (1 + 0.5 N (N - 1)): 1 alone, 1/2 with two, 1/4 with three.
DatabaseOptions HandOptions() {
  DatabaseOptions o;
  o.lambda = 1.0;
  o.sigma = 0.0;
  o.kappa = 0.5;
  return o;
}

std::unique_ptr<UslDatabase> Make(const DatabaseOptions& options) {
  absl::StatusOr<std::unique_ptr<UslDatabase>> db =
      UslDatabase::Create(options);
  EXPECT_TRUE(db.ok()) << db.status();
  return *std::move(db);
}

// ---- The USL model ----------------------------------------------------------

TEST(UslThroughputTest, MatchesTheFormula) {
  // X(N) = 200 N / (1 + 0.05 (N - 1) + 0.002 N (N - 1)).
  EXPECT_DOUBLE_EQ(UslThroughput(kDefaults, 1), 200.0);
  EXPECT_DOUBLE_EQ(UslThroughput(kDefaults, 2), 400.0 / 1.054);
  EXPECT_NEAR(UslThroughput(kDefaults, 22), 4400.0 / 2.974, 1e-9);
  EXPECT_NEAR(UslThroughput(kDefaults, 100), 20000.0 / 25.75, 1e-9);
  EXPECT_NEAR(UslThroughput(kDefaults, 1000), 200000.0 / 2048.95, 1e-9);
  EXPECT_EQ(UslThroughput(kDefaults, 0), 0.0);
}

TEST(UslThroughputTest, PeakIsAtTheKnee) {
  const double n_star = UslPeakConcurrency(kDefaults);
  EXPECT_NEAR(n_star, std::sqrt(0.95 / 0.002), 1e-12);
  EXPECT_NEAR(n_star, 21.794, 1e-3);
  const double peak = UslPeak(kDefaults);
  EXPECT_NEAR(peak, 1479.53, 0.01);
  // The peak is the maximum: no concurrency, integer or not, does better.
  for (double n = 1; n <= 200; n += 0.25) {
    EXPECT_LE(UslThroughput(kDefaults, n), peak + 1e-9) << "n=" << n;
  }
}

TEST(UslThroughputTest, RisesBeforeTheKneeAndFallsPastIt) {
  for (int n = 1; n < 21; ++n) {
    EXPECT_LT(UslThroughput(kDefaults, n), UslThroughput(kDefaults, n + 1))
        << "n=" << n;
  }
  for (int n = 22; n < 2000; ++n) {
    EXPECT_GT(UslThroughput(kDefaults, n), UslThroughput(kDefaults, n + 1))
        << "n=" << n;
  }
  // Far past the knee, more concurrency makes the database collapse.
  EXPECT_LT(UslThroughput(kDefaults, 100), 0.55 * UslPeak(kDefaults));
  EXPECT_LT(UslThroughput(kDefaults, 1000), 0.07 * UslPeak(kDefaults));
}

TEST(UslDatabaseTest, CapacityFactorScalesThroughputNotTheKnee) {
  std::unique_ptr<UslDatabase> db = Make(kDefaults);
  EXPECT_DOUBLE_EQ(db->peak(), UslPeak(kDefaults));
  db->SetCapacityFactor(SimTime(0), 0.5);
  EXPECT_DOUBLE_EQ(db->capacity_factor(), 0.5);
  EXPECT_DOUBLE_EQ(db->peak(), 0.5 * UslPeak(kDefaults));
  EXPECT_DOUBLE_EQ(db->Throughput(22), 0.5 * UslThroughput(kDefaults, 22));
  EXPECT_DOUBLE_EQ(db->peak_concurrency(), UslPeakConcurrency(kDefaults));
}

TEST(UslDatabaseTest, ValidatesEveryField) {
  DatabaseOptions o;
  o.lambda = 0;
  EXPECT_THAT(ValidateDatabaseOptions(o).message(), HasSubstr("lambda"));
  o = DatabaseOptions();
  o.sigma = 1.0;
  EXPECT_THAT(ValidateDatabaseOptions(o).message(), HasSubstr("sigma"));
  o = DatabaseOptions();
  o.sigma = -0.1;
  EXPECT_THAT(ValidateDatabaseOptions(o).message(), HasSubstr("sigma"));
  o = DatabaseOptions();
  o.kappa = 0;
  EXPECT_EQ(UslDatabase::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ValidateDatabaseOptions(o).message(), HasSubstr("kappa"));
  EXPECT_TRUE(ValidateDatabaseOptions(DatabaseOptions()).ok());
}

// ---- Processor sharing ------------------------------------------------------

TEST(ProcessorSharingTest, LoneWriteTakesOneOverLambda) {
  std::unique_ptr<UslDatabase> db = Make(kDefaults);
  EXPECT_EQ(db->next_completion(), kNever);
  db->Submit(SimTime(1.0), 1.0, /*tag=*/7);
  EXPECT_EQ(db->in_service(), 1);
  EXPECT_NEAR(db->next_completion().count(), 1.005, 1e-12);
  const UslDatabase::Completion done = db->CompleteNext();
  EXPECT_EQ(done.tag, 7u);
  EXPECT_NEAR(done.at.count(), 1.005, 1e-12);
  EXPECT_EQ(db->in_service(), 0);
  EXPECT_EQ(db->next_completion(), kNever);
}

// A at 0, B at 0.5, C at 1.0, one unit each, rates 1, 1/2, 1/4:
//   [0, 0.5)    A alone:  A 0.5
//   [0.5, 1.0)  A, B:     A 0.75, B 0.25
//   [1.0, 2.0)  A, B, C:  A 1 (done at 2.0), B 0.5, C 0.25
//   [2.0, 3.0)  B, C:     B 1 (done at 3.0), C 0.75
//   [3.0, 3.25) C alone:  C 1 (done at 3.25)
TEST(ProcessorSharingTest, HandComputedCompletionOrderAndTimes) {
  std::unique_ptr<UslDatabase> db = Make(HandOptions());
  db->Submit(SimTime(0.0), 1.0, /*tag=*/1);
  EXPECT_DOUBLE_EQ(db->next_completion().count(), 1.0);
  db->Submit(SimTime(0.5), 1.0, /*tag=*/2);
  EXPECT_DOUBLE_EQ(db->next_completion().count(), 1.5);
  db->Submit(SimTime(1.0), 1.0, /*tag=*/3);
  EXPECT_DOUBLE_EQ(db->next_completion().count(), 2.0);
  EXPECT_EQ(db->in_service(), 3);

  UslDatabase::Completion done = db->CompleteNext();
  EXPECT_EQ(done.tag, 1u);
  EXPECT_DOUBLE_EQ(done.at.count(), 2.0);
  done = db->CompleteNext();
  EXPECT_EQ(done.tag, 2u);
  EXPECT_DOUBLE_EQ(done.at.count(), 3.0);
  done = db->CompleteNext();
  EXPECT_EQ(done.tag, 3u);
  EXPECT_DOUBLE_EQ(done.at.count(), 3.25);
  EXPECT_EQ(db->in_service(), 0);
}

TEST(ProcessorSharingTest, EqualWritesAtOneTimeFinishTogetherInOrder) {
  std::unique_ptr<UslDatabase> db = Make(HandOptions());
  db->Submit(SimTime(0.0), 1.0, /*tag=*/1);
  db->Submit(SimTime(0.0), 1.0, /*tag=*/2);
  UslDatabase::Completion first = db->CompleteNext();
  UslDatabase::Completion second = db->CompleteNext();
  EXPECT_EQ(first.tag, 1u);
  EXPECT_EQ(second.tag, 2u);
  // Both at rate 1/2 until both are done.
  EXPECT_DOUBLE_EQ(first.at.count(), 2.0);
  EXPECT_DOUBLE_EQ(second.at.count(), 2.0);
}

// Unequal work: the short write overtakes. A (2 units) and B (0.5) at 0:
// both at 1/2 until B is done at 1.0 (A has 0.5); A alone at 1 needs 1.5
// more: done at 2.5.
TEST(ProcessorSharingTest, ShortWorkOvertakesLongWork) {
  std::unique_ptr<UslDatabase> db = Make(HandOptions());
  db->Submit(SimTime(0.0), 2.0, /*tag=*/1);
  db->Submit(SimTime(0.0), 0.5, /*tag=*/2);
  UslDatabase::Completion done = db->CompleteNext();
  EXPECT_EQ(done.tag, 2u);
  EXPECT_DOUBLE_EQ(done.at.count(), 1.0);
  done = db->CompleteNext();
  EXPECT_EQ(done.tag, 1u);
  EXPECT_DOUBLE_EQ(done.at.count(), 2.5);
}

// A and B at 0 progress at 1/2; B is cancelled at 1.0 with A at 0.5; A
// alone finishes at 1.5.
TEST(ProcessorSharingTest, CancelFreesCapacityAtOnce) {
  std::unique_ptr<UslDatabase> db = Make(HandOptions());
  db->Submit(SimTime(0.0), 1.0, /*tag=*/1);
  const UslDatabase::Handle b = db->Submit(SimTime(0.0), 1.0, /*tag=*/2);
  EXPECT_TRUE(db->Cancel(SimTime(1.0), b));
  EXPECT_FALSE(db->Cancel(SimTime(1.0), b));
  EXPECT_EQ(db->in_service(), 1);
  EXPECT_DOUBLE_EQ(db->next_completion().count(), 1.5);
  const UslDatabase::Completion done = db->CompleteNext();
  EXPECT_EQ(done.tag, 1u);
  EXPECT_DOUBLE_EQ(done.at.count(), 1.5);
  EXPECT_EQ(db->next_completion(), kNever);
}

TEST(ProcessorSharingTest, HandleOfAFinishedWriteIsStale) {
  std::unique_ptr<UslDatabase> db = Make(HandOptions());
  const UslDatabase::Handle a = db->Submit(SimTime(0.0), 1.0, /*tag=*/1);
  db->CompleteNext();
  // The slot is reused by the next write; the old handle must not cancel it.
  db->Submit(SimTime(2.0), 1.0, /*tag=*/2);
  EXPECT_FALSE(db->Cancel(SimTime(2.0), a));
  EXPECT_EQ(db->in_service(), 1);
}

// The capacity factor changes the rate from its time on: one write alone at
// rate 1 until 0.5, then at 1/2: the remaining 0.5 takes 1 s.
TEST(ProcessorSharingTest, CapacityChangeAppliesFromItsTime) {
  std::unique_ptr<UslDatabase> db = Make(HandOptions());
  db->Submit(SimTime(0.0), 1.0, /*tag=*/1);
  db->SetCapacityFactor(SimTime(0.5), 0.5);
  EXPECT_DOUBLE_EQ(db->next_completion().count(), 1.5);
  EXPECT_DOUBLE_EQ(db->CompleteNext().at.count(), 1.5);
}

// With equal work, processor sharing is FIFO, whatever the arrival times;
// many writes are handled in O(log N) each.
TEST(ProcessorSharingTest, EqualWorkCompletesInArrivalOrder) {
  std::unique_ptr<UslDatabase> db = Make(kDefaults);
  constexpr int kWrites = 20000;
  uint64_t expected = 0;
  SimTime last(0);
  const auto complete_until = [&](SimTime t) {
    while (db->in_service() > 0 && db->next_completion() <= t) {
      const UslDatabase::Completion done = db->CompleteNext();
      ASSERT_EQ(done.tag, expected++);
      ASSERT_GE(done.at, last);
      last = done.at;
    }
  };
  // 2000 writes/s: past the peak, so the database fills up.
  for (int i = 0; i < kWrites; ++i) {
    const SimTime t(i * 5e-4);
    complete_until(t);
    db->Submit(t, 1.0, static_cast<uint64_t>(i));
  }
  EXPECT_GT(db->in_service(), 1000);
  complete_until(kNever);
  EXPECT_EQ(expected, static_cast<uint64_t>(kWrites));
  EXPECT_EQ(db->in_service(), 0);
}

}  // namespace
}  // namespace spillway::sim
