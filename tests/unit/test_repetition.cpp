// Loop detection for generations (lib/rl/repetition): periodic tails of several periods are
// caught, min_repeats, min_tokens and off are respected, and non-periodic tails are not.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "rl/repetition.hpp"

using namespace llmlab;

namespace {

using Tokens = std::vector<std::int32_t>;

RepetitionSettings settings(std::int64_t max_period, std::int64_t min_repeats, std::int64_t min_tokens) {
  RepetitionSettings s;
  s.max_period = max_period;
  s.min_repeats = min_repeats;
  s.min_tokens = min_tokens;
  return s;
}

// A non-periodic prefix, then `block` repeated `times` times.
Tokens looped(const Tokens& block, int times) {
  Tokens t{901, 902, 903, 904, 905};
  for (int i = 0; i < times; ++i) t.insert(t.end(), block.begin(), block.end());
  return t;
}

bool detect(const Tokens& t, const RepetitionSettings& s) { return ends_in_repetition(t, s); }

}  // namespace

TEST_CASE("repetition: detects repeated blocks of various periods") {
  const RepetitionSettings s = settings(8, 4, 0);
  CHECK(detect(looped({7}, 4), s));
  CHECK(detect(looped({1, 2}, 4), s));
  CHECK(detect(looped({1, 2, 3}, 4), s));
  CHECK(detect(looped({5, 1, 5, 2, 9}, 4), s));
  CHECK(detect(looped({1, 2, 3, 4, 5, 6, 7, 8}, 4), s));
  // A loop that starts partway through a block still ends in whole copies of a rotation.
  Tokens t = looped({1, 2, 3}, 5);
  t.push_back(1);
  CHECK(detect(t, s));
}

TEST_CASE("repetition: respects min_repeats") {
  const RepetitionSettings s = settings(8, 4, 0);
  CHECK_FALSE(detect(looped({1, 2, 3}, 3), s));
  CHECK(detect(looped({1, 2, 3}, 4), s));
  CHECK_FALSE(detect(looped({1, 2, 3}, 4), settings(8, 5, 0)));
  CHECK_FALSE(detect(looped({7}, 3), s));
}

TEST_CASE("repetition: respects min_tokens") {
  // Four copies of a 3-token block cover 12 tokens: enough for 12, not for 13 (then 5 copies are needed).
  CHECK(detect(looped({1, 2, 3}, 4), settings(8, 4, 12)));
  CHECK_FALSE(detect(looped({1, 2, 3}, 4), settings(8, 4, 13)));
  CHECK(detect(looped({1, 2, 3}, 5), settings(8, 4, 13)));
  // The default 16 tokens: "ab" must repeat 8 times.
  const RepetitionSettings d = settings(8, 4, 16);
  CHECK_FALSE(detect(looped({1, 2}, 7), d));
  CHECK(detect(looped({1, 2}, 8), d));
}

TEST_CASE("repetition: respects max_period and off") {
  const Tokens t = looped({1, 2, 3, 4, 5}, 6);
  CHECK(detect(t, settings(5, 4, 0)));
  CHECK_FALSE(detect(t, settings(4, 4, 0)));
  CHECK_FALSE(detect(t, settings(0, 4, 0)));
  CHECK_FALSE(detect(looped({7}, 100), RepetitionSettings{}));  // default: off
}

TEST_CASE("repetition: no false positive on non-periodic tails") {
  // All distinct tokens: nothing ever repeats, even for the most eager settings.
  Tokens distinct;
  for (std::int32_t i = 0; i < 300; ++i) distinct.push_back(i);
  CHECK_FALSE(detect(distinct, settings(16, 2, 0)));
  // The Thue-Morse sequence over two tokens never holds any block three times back to back, so
  // no prefix of it may be flagged with min_repeats 3, though it is full of squares.
  Tokens thue_morse;
  bool flagged = false;
  for (unsigned i = 0; i < 300; ++i) {
    thue_morse.push_back(static_cast<std::int32_t>(__builtin_popcount(i) & 1));
    flagged = flagged || detect(thue_morse, settings(16, 3, 0));
  }
  CHECK_FALSE(flagged);
  CHECK(detect(thue_morse, settings(16, 2, 0)));  // ... which min_repeats 2 does catch
  // A loop that was broken by one different token no longer counts.
  Tokens broken = looped({1, 2}, 10);
  broken.push_back(3);
  CHECK_FALSE(detect(broken, settings(8, 4, 0)));
  // Nearly periodic: the block changes in its last copy.
  Tokens near = looped({1, 2, 3}, 5);
  near.back() = 4;
  CHECK_FALSE(detect(near, settings(8, 4, 0)));
  CHECK_FALSE(detect({}, settings(8, 4, 0)));
  CHECK_FALSE(detect({1, 1, 1}, settings(8, 4, 0)));  // too short
}

TEST_CASE("repetition: bad settings throw when on") {
  CHECK_THROWS_AS(detect(looped({1}, 10), settings(4, 1, 0)), Error);
  CHECK_THROWS_AS(detect(looped({1}, 10), settings(4, 4, -1)), Error);
  CHECK_NOTHROW(detect(looped({1}, 10), settings(0, 1, 0)));
}
