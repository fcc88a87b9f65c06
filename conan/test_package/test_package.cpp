// Builds a WriteThrottle with default options and admits one write.
// Exit code 0 when the write is admitted.
#include <cstdio>
#include <memory>
#include <utility>

#include "spillway/throttle.h"

int main() {
  // No designated initializers: they are C++20, and this must build as C++17.
  spillway::WriteThrottleOptions options;
  options.name = "conan_test_package";
  absl::StatusOr<std::unique_ptr<spillway::WriteThrottle>> throttle =
      spillway::WriteThrottle::Create(std::move(options));
  if (!throttle.ok()) {
    std::fprintf(stderr, "WriteThrottle::Create: %s\n",
                 throttle.status().ToString().c_str());
    return 1;
  }
  spillway::ThrottleAdmission admission = (*throttle)->Admit();
  if (!admission.ok()) {
    std::fprintf(stderr, "write refused: %s\n",
                 admission.rejection().ToString().c_str());
    return 1;
  }
  spillway::ThrottlePermit permit = std::move(admission).permit();
  permit.Success();
  std::printf("spillway: write admitted by throttle '%s'\n",
              (*throttle)->name().c_str());
  return 0;
}
