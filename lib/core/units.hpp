// Human-readable quantities: byte sizes ("80GiB", "1.5 TB"), counts and FLOPs, both ways.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmlab {

// Parses "80GiB", "80 GiB", "1.5e9", "512MB", "1024" (bytes). Binary (KiB, MiB, GiB, TiB)
// and decimal (KB, MB, GB, TB) suffixes, case-insensitive "b". nullopt when malformed.
std::optional<std::uint64_t> parse_bytes(std::string_view text);

// "74.51 GiB", "512.00 MiB", "0 B": binary units, two decimals.
std::string format_bytes(double bytes);
// GiB with two decimals and no unit, for aligned tables.
std::string format_gib(double bytes);
// "6,738,415,616".
std::string format_count(std::uint64_t n);
// "6.74 B", "124.4 M": a short count.
std::string format_short_count(double n);
// "1.23 PFLOP", "45.6 TFLOP".
std::string format_flops(double flops);
// "1.23 s", "45.6 ms", "2 h 3 min".
std::string format_seconds(double seconds);

constexpr std::uint64_t KiB = 1024ull;
constexpr std::uint64_t MiB = 1024ull * KiB;
constexpr std::uint64_t GiB = 1024ull * MiB;

}  // namespace llmlab
