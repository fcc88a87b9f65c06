#include "lib/core/shard.h"

#include <memory>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/slot_holder.h"

namespace spillway::internal {
namespace {

using ::spillway::test::SlotHolder;

TEST(ThreadSlotTest, StableWithinAThread) {
  const int slot = ThreadSlot();
  EXPECT_GE(slot, 0);
  EXPECT_LT(slot, kAllSlots);
  EXPECT_EQ(ThreadSlot(), slot);
}

// Live threads hold distinct exclusive slots until none is left; later
// threads get shared slots; a slot freed by an exiting thread goes to the
// next thread that asks.
TEST(ThreadSlotTest, ExclusiveWhileHeldSharedWhenExhaustedReusedAfterExit) {
  std::vector<std::unique_ptr<SlotHolder>> holders;
  std::set<int> exclusive;
  int shared = -1;
  // At most kThreadSlots claims succeed (fewer if this process's other
  // threads hold some), so this loop ends.
  for (int i = 0; i <= kThreadSlots; ++i) {
    holders.push_back(std::make_unique<SlotHolder>());
    const int slot = holders.back()->slot();
    ASSERT_GE(slot, 0);
    ASSERT_LT(slot, kAllSlots);
    if (!IsExclusiveSlot(slot)) {
      shared = slot;
      break;
    }
    EXPECT_TRUE(exclusive.insert(slot).second) << "slot " << slot << " twice";
  }
  ASSERT_GE(shared, kThreadSlots) << "every claim got an exclusive slot";
  ASSERT_FALSE(exclusive.empty());

  // Free one exclusive slot: the next thread gets exactly that one.
  const int freed = holders.front()->slot();
  holders.front()->Exit();
  SlotHolder next;
  EXPECT_EQ(next.slot(), freed);
  // And the pool is full again.
  SlotHolder after;
  EXPECT_FALSE(IsExclusiveSlot(after.slot()));
}

}  // namespace
}  // namespace spillway::internal
