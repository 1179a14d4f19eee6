// Parsing and printing of byte sizes, counts, FLOPs and durations.
#include "core/units.hpp"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

namespace llmlab {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<std::uint64_t> parse_bytes(std::string_view text) {
  std::string s(text);
  // Trim.
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t start = 0;
  while (start < s.size() && std::isspace(static_cast<unsigned char>(s[start]))) ++start;
  s = s.substr(start);
  if (s.empty()) return std::nullopt;

  const char* begin = s.c_str();
  char* end = nullptr;
  const double value = std::strtod(begin, &end);
  if (end == begin || !std::isfinite(value) || value < 0) return std::nullopt;
  std::string suffix(end);
  while (!suffix.empty() && suffix.front() == ' ') suffix.erase(suffix.begin());
  suffix = lower(suffix);

  struct Unit {
    const char* name;
    double scale;
  };
  static constexpr std::array<Unit, 13> units{{{"", 1.0},
                                               {"b", 1.0},
                                               {"k", 1e3},
                                               {"kb", 1e3},
                                               {"kib", 1024.0},
                                               {"mb", 1e6},
                                               {"mib", 1024.0 * 1024},
                                               {"gb", 1e9},
                                               {"gib", 1024.0 * 1024 * 1024},
                                               {"tb", 1e12},
                                               {"tib", 1024.0 * 1024 * 1024 * 1024},
                                               {"m", 1e6},
                                               {"g", 1e9}}};
  for (const auto& u : units) {
    if (suffix == u.name) {
      const double bytes = value * u.scale;
      if (bytes > 1.8e19) return std::nullopt;
      return static_cast<std::uint64_t>(std::llround(bytes));
    }
  }
  return std::nullopt;
}

std::string format_bytes(double bytes) {
  static constexpr std::array<const char*, 5> names{"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t i = 0;
  double v = bytes;
  while (std::fabs(v) >= 1024.0 && i + 1 < names.size()) {
    v /= 1024.0;
    ++i;
  }
  if (i == 0) return fmt::format("{:.0f} B", v);
  return fmt::format("{:.2f} {}", v, names[i]);
}

std::string format_gib(double bytes) { return fmt::format("{:.2f}", bytes / static_cast<double>(GiB)); }

std::string format_count(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string format_short_count(double n) {
  if (n >= 1e12) return fmt::format("{:.2f} T", n / 1e12);
  if (n >= 1e9) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.1f} M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.1f} K", n / 1e3);
  return fmt::format("{:.0f}", n);
}

std::string format_flops(double flops) {
  static constexpr std::array<const char*, 6> names{"FLOP", "KFLOP", "MFLOP", "GFLOP", "TFLOP",
                                                    "PFLOP"};
  std::size_t i = 0;
  double v = flops;
  while (v >= 1000.0 && i + 1 < names.size()) {
    v /= 1000.0;
    ++i;
  }
  return fmt::format("{:.2f} {}", v, names[i]);
}

std::string format_seconds(double s) {
  if (s < 1e-3) return fmt::format("{:.1f} us", s * 1e6);
  if (s < 1.0) return fmt::format("{:.1f} ms", s * 1e3);
  if (s < 120.0) return fmt::format("{:.2f} s", s);
  if (s < 7200.0) return fmt::format("{:.1f} min", s / 60.0);
  return fmt::format("{:.1f} h", s / 3600.0);
}

}  // namespace llmlab
