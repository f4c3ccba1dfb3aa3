// Tests of Mapping: an aligned anonymous mapping starts on its alignment and holds exactly
// the length asked for.
#include "base/mapping.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace kdom {
namespace {

TEST(Mapping, AnonymousAlignedStartsOnTheAlignmentAndHoldsTheLength) {
  Mapping mapping = Mapping::anonymous_aligned(3 * 4096, 1 << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(mapping.data()) % (1 << 20), 0u);
  EXPECT_EQ(mapping.size(), 3u * 4096);
  mapping.data()[0] = 1;
  mapping.data()[mapping.size() - 1] = 2;
  EXPECT_EQ(mapping.data()[0] + mapping.data()[mapping.size() - 1], 3);
}

}  // namespace
}  // namespace kdom
