// Test helpers for options and factories: a parameter table for "every
// invalid option field is refused with InvalidArgument naming the field and
// the value", and ValueOrFail for factories expected to succeed.
//
//   using Case = spillway::test::InvalidOptionsCase<VegasLimitOptions>;
//   class VegasInvalid : public ::testing::TestWithParam<Case> {};
//   TEST_P(VegasInvalid, IsRefused) {
//     VegasLimitOptions o;
//     GetParam().mutate(o);
//     ExpectInvalidArgument(ValidateVegasLimitOptions(o),
//                           "VegasLimitOptions." + GetParam().field,
//                           GetParam().value);
//   }
//   INSTANTIATE_TEST_SUITE_P(Fields, VegasInvalid, ::testing::Values(...),
//                            spillway::test::CaseName<VegasLimitOptions>);

#ifndef SPILLWAY_TESTS_COMMON_INVALID_OPTIONS_H_
#define SPILLWAY_TESTS_COMMON_INVALID_OPTIONS_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spillway::test {

template <typename Options>
struct InvalidOptionsCase {
  std::string name;                      // Test name suffix.
  std::function<void(Options&)> mutate;  // Breaks one field.
  std::string field;                     // The field's name.
  std::string value;                     // The bad value as printed.
};

// gtest prints a parameter with this (found by ADL) instead of its bytes.
template <typename Options>
void PrintTo(const InvalidOptionsCase<Options>& c, std::ostream* os) {
  *os << c.name;
}

template <typename Options>
std::string CaseName(
    const ::testing::TestParamInfo<InvalidOptionsCase<Options>>& info) {
  return info.param.name;
}

// `status` is InvalidArgument and its message contains `field` and
// "got <value>" (the value with its prefix: a bare "0" would also match a
// bound stated in the message).
inline void ExpectInvalidArgument(const absl::Status& status,
                                  const std::string& field,
                                  const std::string& value) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr(field));
  EXPECT_THAT(std::string(status.message()),
              ::testing::HasSubstr("got " + value));
}

// The object a factory made, or null after recording a test failure that
// shows the status (for factories that are expected to succeed).
template <typename T>
std::unique_ptr<T> ValueOrFail(absl::StatusOr<std::unique_ptr<T>> made) {
  if (!made.ok()) {
    ADD_FAILURE() << made.status();
    return nullptr;
  }
  return *std::move(made);
}

}  // namespace spillway::test

#endif  // SPILLWAY_TESTS_COMMON_INVALID_OPTIONS_H_
