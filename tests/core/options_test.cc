// Tests of options validation: every invalid field of every options struct
// is refused with InvalidArgument, and the message names the field and the
// bad value; every boundary value is accepted; the defaults validate.

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/aimd_limit.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/fixed_limit.h"
#include "spillway/limit.h"
#include "spillway/token_bucket.h"

namespace spillway {
namespace {

using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// One invalid (or, for the "valid" tables, boundary) setting of one field.
template <typename Options>
struct OptionsCase {
  std::string name;
  std::function<void(Options&)> mutate;
  // Substrings the message must contain: the field's name, and the value as
  // the library prints it. The messages end "...; got <value>", so the
  // value is matched with that prefix: a bare "0" would be found in any
  // message that states a bound.
  std::vector<std::string> field;
  std::string value;
};

template <typename Options>
std::string CaseName(
    const ::testing::TestParamInfo<OptionsCase<Options>>& info) {
  return info.param.name;
}

void ExpectInvalid(const absl::Status& status,
                   const std::vector<std::string>& field,
                   const std::string& value) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::string message(status.message());
  for (const std::string& part : field) {
    EXPECT_THAT(message, HasSubstr(part));
  }
  if (!value.empty()) {
    EXPECT_THAT(message, HasSubstr("got " + value));
  }
}

// --- Defaults ---------------------------------------------------------------

TEST(DefaultOptionsTest, Validate) {
  EXPECT_TRUE(ValidateTokenBucketOptions(TokenBucketOptions()).ok());
  EXPECT_TRUE(ValidateAimdLimitOptions(AimdLimitOptions()).ok());
  EXPECT_TRUE(
      ValidateConcurrencyLimiterOptions(ConcurrencyLimiterOptions()).ok());
}

TEST(DefaultOptionsTest, Create) {
  absl::StatusOr<std::unique_ptr<TokenBucket>> bucket =
      TokenBucket::Create(TokenBucketOptions());
  ASSERT_TRUE(bucket.ok()) << bucket.status();
  EXPECT_EQ((*bucket)->rate(), 1000.0);
  EXPECT_EQ((*bucket)->burst(), 100.0);

  absl::StatusOr<std::unique_ptr<AimdLimit>> aimd =
      AimdLimit::Create(AimdLimitOptions());
  ASSERT_TRUE(aimd.ok()) << aimd.status();
  EXPECT_EQ((*aimd)->current(), 20);

  absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> limiter =
      ConcurrencyLimiter::Create(ConcurrencyLimiterOptions());
  ASSERT_TRUE(limiter.ok()) << limiter.status();
  EXPECT_EQ((*limiter)->name(), "default");
  // The default algorithm, KneeLimit, starts at 1 and slow-starts.
  EXPECT_EQ((*limiter)->limit(), 1);
  EXPECT_EQ((*limiter)->limit_algorithm().max_limit(), 1000);
}

// --- TokenBucketOptions -----------------------------------------------------

using TokenBucketCase = OptionsCase<TokenBucketOptions>;

class InvalidTokenBucketOptionsTest
    : public ::testing::TestWithParam<TokenBucketCase> {};

TEST_P(InvalidTokenBucketOptionsTest, Validate) {
  TokenBucketOptions options;
  GetParam().mutate(options);
  ExpectInvalid(ValidateTokenBucketOptions(options), GetParam().field,
                GetParam().value);
}

TEST_P(InvalidTokenBucketOptionsTest, Create) {
  TokenBucketOptions options;
  GetParam().mutate(options);
  absl::StatusOr<std::unique_ptr<TokenBucket>> bucket =
      TokenBucket::Create(options);
  ASSERT_FALSE(bucket.ok());
  ExpectInvalid(bucket.status(), GetParam().field, GetParam().value);
}

INSTANTIATE_TEST_SUITE_P(
    All, InvalidTokenBucketOptionsTest,
    ::testing::ValuesIn(std::vector<TokenBucketCase>{
        {"RateZero",
         [](TokenBucketOptions& o) { o.rate = 0; },
         {"TokenBucketOptions.rate"},
         "0"},
        {"RateNegative",
         [](TokenBucketOptions& o) { o.rate = -5; },
         {"TokenBucketOptions.rate"},
         "-5"},
        {"RateNaN",
         [](TokenBucketOptions& o) { o.rate = kNaN; },
         {"TokenBucketOptions.rate"},
         "nan"},
        {"RateInfinite",
         [](TokenBucketOptions& o) { o.rate = kInf; },
         {"TokenBucketOptions.rate"},
         "inf"},
        {"RateNegativeInfinite",
         [](TokenBucketOptions& o) { o.rate = -kInf; },
         {"TokenBucketOptions.rate"},
         "-inf"},
        {"RateAboveMax",
         [](TokenBucketOptions& o) { o.rate = 2.5e9; },
         {"TokenBucketOptions.rate"},
         "2.5e+09"},
        {"BurstBelowOne",
         [](TokenBucketOptions& o) { o.burst = 0.5; },
         {"TokenBucketOptions.burst"},
         "0.5"},
        {"BurstZero",
         [](TokenBucketOptions& o) { o.burst = 0; },
         {"TokenBucketOptions.burst"},
         "0"},
        {"BurstNaN",
         [](TokenBucketOptions& o) { o.burst = kNaN; },
         {"TokenBucketOptions.burst"},
         "nan"},
        {"BurstInfinite",
         [](TokenBucketOptions& o) { o.burst = kInf; },
         {"TokenBucketOptions.burst"},
         "inf"},
        {"BurstAboveMax",
         [](TokenBucketOptions& o) { o.burst = 3e9; },
         {"TokenBucketOptions.burst"},
         "3e+09"},
        {"FillTimeAboveMax",
         [](TokenBucketOptions& o) {
           o.rate = 1e-6;
           o.burst = 1000;
         },
         {"TokenBucketOptions", "burst / rate"},
         "burst=1000, rate=1e-06"},
        {"InitialTokensNegative",
         [](TokenBucketOptions& o) { o.initial_tokens = -1; },
         {"TokenBucketOptions.initial_tokens"},
         "-1"},
        {"InitialTokensAboveBurst",
         [](TokenBucketOptions& o) {
           o.burst = 10;
           o.initial_tokens = 10.5;
         },
         {"TokenBucketOptions.initial_tokens"},
         "10.5"},
        {"InitialTokensNaN",
         [](TokenBucketOptions& o) { o.initial_tokens = kNaN; },
         {"TokenBucketOptions.initial_tokens"},
         "nan"},
        {"NameEmpty",
         [](TokenBucketOptions& o) { o.name.clear(); },
         {"TokenBucketOptions.name", "empty"},
         ""},
    }),
    CaseName<TokenBucketOptions>);

class ValidTokenBucketOptionsTest
    : public ::testing::TestWithParam<TokenBucketCase> {};

TEST_P(ValidTokenBucketOptionsTest, Validate) {
  TokenBucketOptions options;
  GetParam().mutate(options);
  EXPECT_TRUE(ValidateTokenBucketOptions(options).ok())
      << ValidateTokenBucketOptions(options);
  EXPECT_TRUE(TokenBucket::Create(options).ok());
}

INSTANTIATE_TEST_SUITE_P(
    All, ValidTokenBucketOptionsTest,
    ::testing::ValuesIn(std::vector<TokenBucketCase>{
        {"RateMax", [](TokenBucketOptions& o) { o.rate = 1e9; }, {}, ""},
        {"RateTiny", [](TokenBucketOptions& o) { o.rate = 1e-6; }, {}, ""},
        {"BurstOne", [](TokenBucketOptions& o) { o.burst = 1; }, {}, ""},
        {"BurstMax", [](TokenBucketOptions& o) { o.burst = 1e9; }, {}, ""},
        {"InitialTokensZero",
         [](TokenBucketOptions& o) { o.initial_tokens = 0; },
         {},
         ""},
        {"InitialTokensBurst",
         [](TokenBucketOptions& o) {
           o.burst = 10;
           o.initial_tokens = 10;
         },
         {},
         ""},
        {"NameOneCharacter",
         [](TokenBucketOptions& o) { o.name = "x"; },
         {},
         ""},
    }),
    CaseName<TokenBucketOptions>);

// --- AimdLimitOptions -------------------------------------------------------

using AimdCase = OptionsCase<AimdLimitOptions>;

class InvalidAimdLimitOptionsTest : public ::testing::TestWithParam<AimdCase> {
};

TEST_P(InvalidAimdLimitOptionsTest, Validate) {
  AimdLimitOptions options;
  GetParam().mutate(options);
  ExpectInvalid(ValidateAimdLimitOptions(options), GetParam().field,
                GetParam().value);
}

TEST_P(InvalidAimdLimitOptionsTest, Create) {
  AimdLimitOptions options;
  GetParam().mutate(options);
  absl::StatusOr<std::unique_ptr<AimdLimit>> limit = AimdLimit::Create(options);
  ASSERT_FALSE(limit.ok());
  ExpectInvalid(limit.status(), GetParam().field, GetParam().value);
}

INSTANTIATE_TEST_SUITE_P(
    All, InvalidAimdLimitOptionsTest,
    ::testing::ValuesIn(std::vector<AimdCase>{
        {"MinLimitZero",
         [](AimdLimitOptions& o) {
           o.min_limit = 0;
           o.initial_limit = 1;
         },
         {"AimdLimitOptions.min_limit"},
         "0"},
        {"MinLimitNegative",
         [](AimdLimitOptions& o) {
           o.min_limit = -3;
           o.initial_limit = 1;
         },
         {"AimdLimitOptions.min_limit"},
         "-3"},
        {"MaxLimitBelowMin",
         [](AimdLimitOptions& o) {
           o.min_limit = 20;
           o.initial_limit = 20;
           o.max_limit = 19;
         },
         {"AimdLimitOptions.max_limit"},
         "19"},
        {"MaxLimitAboveCeiling",
         [](AimdLimitOptions& o) { o.max_limit = kMaxConcurrencyLimit + 1; },
         {"AimdLimitOptions.max_limit"},
         "2097152"},
        {"InitialLimitBelowMin",
         [](AimdLimitOptions& o) { o.initial_limit = 19; },
         {"AimdLimitOptions.initial_limit"},
         "19"},
        {"InitialLimitAboveMax",
         [](AimdLimitOptions& o) { o.initial_limit = 201; },
         {"AimdLimitOptions.initial_limit"},
         "201"},
        {"BackoffRatioBelowHalf",
         [](AimdLimitOptions& o) { o.backoff_ratio = 0.4; },
         {"AimdLimitOptions.backoff_ratio"},
         "0.4"},
        {"BackoffRatioOne",
         [](AimdLimitOptions& o) { o.backoff_ratio = 1.0; },
         {"AimdLimitOptions.backoff_ratio"},
         "1"},
        {"BackoffRatioZero",
         [](AimdLimitOptions& o) { o.backoff_ratio = 0; },
         {"AimdLimitOptions.backoff_ratio"},
         "0"},
        {"BackoffRatioNaN",
         [](AimdLimitOptions& o) { o.backoff_ratio = kNaN; },
         {"AimdLimitOptions.backoff_ratio"},
         "nan"},
        {"TimeoutZero",
         [](AimdLimitOptions& o) { o.timeout = absl::ZeroDuration(); },
         {"AimdLimitOptions.timeout"},
         "0"},
        {"TimeoutNegative",
         [](AimdLimitOptions& o) { o.timeout = -absl::Seconds(1); },
         {"AimdLimitOptions.timeout"},
         "-1s"},
        {"TimeoutNegativeInfinite",
         [](AimdLimitOptions& o) { o.timeout = -absl::InfiniteDuration(); },
         {"AimdLimitOptions.timeout"},
         "-inf"},
    }),
    CaseName<AimdLimitOptions>);

class ValidAimdLimitOptionsTest : public ::testing::TestWithParam<AimdCase> {};

TEST_P(ValidAimdLimitOptionsTest, Validate) {
  AimdLimitOptions options;
  GetParam().mutate(options);
  EXPECT_TRUE(ValidateAimdLimitOptions(options).ok())
      << ValidateAimdLimitOptions(options);
  EXPECT_TRUE(AimdLimit::Create(options).ok());
}

INSTANTIATE_TEST_SUITE_P(
    All, ValidAimdLimitOptionsTest,
    ::testing::ValuesIn(std::vector<AimdCase>{
        {"MinLimitOne",
         [](AimdLimitOptions& o) {
           o.min_limit = 1;
           o.initial_limit = 1;
         },
         {},
         ""},
        {"MaxEqualsMin",
         [](AimdLimitOptions& o) {
           o.min_limit = 20;
           o.max_limit = 20;
           o.initial_limit = 20;
         },
         {},
         ""},
        {"MaxLimitCeiling",
         [](AimdLimitOptions& o) { o.max_limit = kMaxConcurrencyLimit; },
         {},
         ""},
        {"InitialLimitMax",
         [](AimdLimitOptions& o) { o.initial_limit = 200; },
         {},
         ""},
        {"BackoffRatioHalf",
         [](AimdLimitOptions& o) { o.backoff_ratio = 0.5; },
         {},
         ""},
        {"BackoffRatioJustBelowOne",
         [](AimdLimitOptions& o) { o.backoff_ratio = 0.999; },
         {},
         ""},
        {"TimeoutOneNanosecond",
         [](AimdLimitOptions& o) { o.timeout = absl::Nanoseconds(1); },
         {},
         ""},
        {"TimeoutInfinite",
         [](AimdLimitOptions& o) { o.timeout = absl::InfiniteDuration(); },
         {},
         ""},
    }),
    CaseName<AimdLimitOptions>);

// --- FixedLimit -------------------------------------------------------------

TEST(FixedLimitOptionsTest, ZeroIsInvalid) {
  absl::StatusOr<std::unique_ptr<FixedLimit>> limit = FixedLimit::Create(0);
  ASSERT_FALSE(limit.ok());
  ExpectInvalid(limit.status(), {"FixedLimit", "limit"}, "0");
}

TEST(FixedLimitOptionsTest, NegativeIsInvalid) {
  absl::StatusOr<std::unique_ptr<FixedLimit>> limit = FixedLimit::Create(-7);
  ASSERT_FALSE(limit.ok());
  ExpectInvalid(limit.status(), {"FixedLimit", "limit"}, "-7");
}

TEST(FixedLimitOptionsTest, AboveCeilingIsInvalid) {
  absl::StatusOr<std::unique_ptr<FixedLimit>> limit =
      FixedLimit::Create(kMaxConcurrencyLimit + 1);
  ASSERT_FALSE(limit.ok());
  ExpectInvalid(limit.status(), {"FixedLimit", "limit"}, "2097152");
}

TEST(FixedLimitOptionsTest, BoundsAreValid) {
  EXPECT_TRUE(FixedLimit::Create(1).ok());
  EXPECT_TRUE(FixedLimit::Create(kMaxConcurrencyLimit).ok());
}

// --- ConcurrencyLimiterOptions ----------------------------------------------

using LimiterCase = OptionsCase<ConcurrencyLimiterOptions>;

class InvalidConcurrencyLimiterOptionsTest
    : public ::testing::TestWithParam<LimiterCase> {};

TEST_P(InvalidConcurrencyLimiterOptionsTest, Validate) {
  ConcurrencyLimiterOptions options;
  GetParam().mutate(options);
  ExpectInvalid(ValidateConcurrencyLimiterOptions(options), GetParam().field,
                GetParam().value);
}

TEST_P(InvalidConcurrencyLimiterOptionsTest, Create) {
  ConcurrencyLimiterOptions options;
  GetParam().mutate(options);
  absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> limiter =
      ConcurrencyLimiter::Create(options);
  ASSERT_FALSE(limiter.ok());
  ExpectInvalid(limiter.status(), GetParam().field, GetParam().value);
}

// Partition p of the options, by priority.
PartitionOptions& Part(ConcurrencyLimiterOptions& o, Priority p) {
  return o.partitions[static_cast<int>(p)];
}

INSTANTIATE_TEST_SUITE_P(
    All, InvalidConcurrencyLimiterOptionsTest,
    ::testing::ValuesIn(std::vector<LimiterCase>{
        {"NameEmpty",
         [](ConcurrencyLimiterOptions& o) { o.name.clear(); },
         {"ConcurrencyLimiterOptions.name", "empty"},
         ""},
        {"GuaranteedFractionNegative",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kCritical).guaranteed_fraction = -0.1;
         },
         {"ConcurrencyLimiterOptions.partitions", "critical",
          "guaranteed_fraction"},
         "-0.1"},
        {"GuaranteedFractionAboveOne",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kNormal).guaranteed_fraction = 1.5;
         },
         {"ConcurrencyLimiterOptions.partitions", "normal",
          "guaranteed_fraction"},
         "1.5"},
        {"GuaranteedFractionNaN",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kBatch).guaranteed_fraction = kNaN;
         },
         {"ConcurrencyLimiterOptions.partitions", "batch",
          "guaranteed_fraction"},
         "nan"},
        {"MaxFractionZero",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kBatch).max_fraction = 0;
         },
         {"ConcurrencyLimiterOptions.partitions", "batch", "max_fraction"},
         "0"},
        {"MaxFractionAboveOne",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kCritical).max_fraction = 1.5;
         },
         {"ConcurrencyLimiterOptions.partitions", "critical", "max_fraction"},
         "1.5"},
        {"MaxFractionBelowGuaranteed",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kNormal) = PartitionOptions{0.4, 0.3};
         },
         {"ConcurrencyLimiterOptions.partitions", "normal", "max_fraction"},
         "0.3"},
        {"MaxFractionNaN",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kNormal).max_fraction = kNaN;
         },
         {"ConcurrencyLimiterOptions.partitions", "normal", "max_fraction"},
         "nan"},
        {"GuaranteedFractionsSumAboveOne",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kCritical) = PartitionOptions{0.5, 1.0};
           Part(o, Priority::kNormal) = PartitionOptions{0.4, 1.0};
           Part(o, Priority::kBatch) = PartitionOptions{0.2, 0.5};
         },
         {"ConcurrencyLimiterOptions.partitions", "guaranteed_fraction", "sum"},
         "1.1"},
        {"PriorityHoldNegative",
         [](ConcurrencyLimiterOptions& o) {
           o.priority_hold = -absl::Milliseconds(1);
         },
         {"ConcurrencyLimiterOptions.priority_hold"},
         "-1ms"},
        {"MaxQueuedNegative",
         [](ConcurrencyLimiterOptions& o) { o.max_queued = -1; },
         {"ConcurrencyLimiterOptions.max_queued"},
         "-1"},
        {"MaxQueuedAboveCeiling",
         [](ConcurrencyLimiterOptions& o) {
           o.max_queued = kMaxConcurrencyLimit + 1;
         },
         {"ConcurrencyLimiterOptions.max_queued"},
         "2097152"},
        {"QueueOrderOutOfRange",
         [](ConcurrencyLimiterOptions& o) {
           o.queue_order = static_cast<QueueOrder>(7);
         },
         {"ConcurrencyLimiterOptions.queue_order"},
         "7"},
    }),
    CaseName<ConcurrencyLimiterOptions>);

// A limit algorithm whose ceiling the limiter cannot represent.
class TooLargeLimit final : public Limit {
 public:
  TooLargeLimit() : Limit(10) {}
  void OnSample(const LimitSample&) override {}
  int max_limit() const override { return kMaxConcurrencyLimit + 1; }
};

TEST(ConcurrencyLimiterOptionsTest, LimitWithMaxAboveCeilingIsInvalid) {
  ConcurrencyLimiterOptions options;
  options.limit = std::make_shared<TooLargeLimit>();
  ExpectInvalid(ValidateConcurrencyLimiterOptions(options),
                {"ConcurrencyLimiterOptions.limit"}, "");
  EXPECT_THAT(std::string(ValidateConcurrencyLimiterOptions(options).message()),
              HasSubstr("2097152"));
  EXPECT_FALSE(ConcurrencyLimiter::Create(options).ok());
}

class ValidConcurrencyLimiterOptionsTest
    : public ::testing::TestWithParam<LimiterCase> {};

TEST_P(ValidConcurrencyLimiterOptionsTest, Validate) {
  ConcurrencyLimiterOptions options;
  GetParam().mutate(options);
  EXPECT_TRUE(ValidateConcurrencyLimiterOptions(options).ok())
      << ValidateConcurrencyLimiterOptions(options);
  EXPECT_TRUE(ConcurrencyLimiter::Create(options).ok());
}

INSTANTIATE_TEST_SUITE_P(
    All, ValidConcurrencyLimiterOptionsTest,
    ::testing::ValuesIn(std::vector<LimiterCase>{
        {"GuaranteedFractionZeroAndOne",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kCritical) = PartitionOptions{1.0, 1.0};
           Part(o, Priority::kNormal) = PartitionOptions{0.0, 1.0};
           Part(o, Priority::kBatch) = PartitionOptions{0.0, 0.5};
         },
         {},
         ""},
        {"GuaranteedFractionsSumToExactlyOne",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kCritical) = PartitionOptions{0.2, 1.0};
           Part(o, Priority::kNormal) = PartitionOptions{0.3, 1.0};
           Part(o, Priority::kBatch) = PartitionOptions{0.5, 0.5};
         },
         {},
         ""},
        {"GuaranteedFractionsSumToOneInThirds",
         [](ConcurrencyLimiterOptions& o) {
           for (PartitionOptions& p : o.partitions) {
             p = PartitionOptions{1.0 / 3, 1.0};
           }
         },
         {},
         ""},
        {"MaxFractionTiny",
         [](ConcurrencyLimiterOptions& o) {
           Part(o, Priority::kBatch) = PartitionOptions{0.0, 1e-9};
         },
         {},
         ""},
        {"MaxQueuedZero",
         [](ConcurrencyLimiterOptions& o) { o.max_queued = 0; },
         {},
         ""},
        {"MaxQueuedCeiling",
         [](ConcurrencyLimiterOptions& o) {
           o.max_queued = kMaxConcurrencyLimit;
         },
         {},
         ""},
        {"LifoQueue",
         [](ConcurrencyLimiterOptions& o) {
           o.queue_order = QueueOrder::kLifo;
         },
         {},
         ""},
    }),
    CaseName<ConcurrencyLimiterOptions>);

}  // namespace
}  // namespace spillway
