// Byte sizes, counts and edit distance.
#include <doctest/doctest.h>

#include "core/text.hpp"
#include "core/units.hpp"

using namespace llmlab;

TEST_CASE("parse_bytes") {
  CHECK(parse_bytes("80GiB") == 80ull << 30);
  CHECK(parse_bytes("80 GiB") == 80ull << 30);
  CHECK(parse_bytes("141GB") == 141'000'000'000ull);
  CHECK(parse_bytes("512MiB") == 512ull << 20);
  CHECK(parse_bytes("1.5e9") == 1'500'000'000ull);
  CHECK(parse_bytes("1024") == 1024u);
  CHECK(parse_bytes("2tib") == 2ull << 40);
  CHECK_FALSE(parse_bytes("lots").has_value());
  CHECK_FALSE(parse_bytes("-1GB").has_value());
  CHECK_FALSE(parse_bytes("12 parsecs").has_value());
  CHECK_FALSE(parse_bytes("").has_value());
}

TEST_CASE("format helpers") {
  CHECK(format_count(6738415616) == "6,738,415,616");
  CHECK(format_count(54757) == "54,757");
  CHECK(format_count(999) == "999");
  CHECK(format_count(1000) == "1,000");
  CHECK(format_bytes(1536.0) == "1.50 KiB");
  CHECK(format_bytes(80.0 * (1ull << 30)) == "80.00 GiB");
}

TEST_CASE("did-you-mean") {
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(closest_match("train.micro_bach_size", {"train.micro_batch_size", "train.precision"}) == "train.micro_batch_size");
  CHECK(closest_match("selectiv", {"none", "full", "selective"}) == "selective");
  CHECK(closest_match("banana", {"none", "full", "selective"}).empty());
}
