// The Hopper primitives as the sm90 kernels use them (kernels/attention/sm90_probes.hpp), each
// against plain arithmetic: where a TMA box's bytes land (128B swizzle, 64-column panels, zero
// past the tensor's end), and each wgmma loop's accumulator against the float64 product of its
// inputs. Inputs are multiples of 1/8 in [-1, 1], so every product and sum is exact in fp32 and
// the results must match exactly, whatever order the tensor cores add in. On a GPU these locate a
// wrong layout assumption that the whole-kernel tests can only report; LLMLAB_PROBE_DUMP_DIR
// (scripts/gpu-check.sh sets it) receives every failing probe's results, element by element.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/half_float.hpp"
#include "core/random.hpp"
#include "kernels/attention/sm90_probes.hpp"
#include "tests/cuda/sm90_selected.hpp"

using namespace llmlab;

namespace {

const char* storage_name(cuda::Storage st) { return st == cuda::Storage::bf16 ? "bf16" : "fp16"; }

// n values k / 8, k in [-8, 8], as 16-bit patterns (exact in both types).
std::vector<std::uint16_t> eighths(std::size_t n, std::uint64_t seed, cuda::Storage st) {
  std::vector<std::uint16_t> x(n);
  for (auto& e : x) {
    const float v = static_cast<float>(static_cast<int>(splitmix64(seed) % 17) - 8) / 8.0f;
    e = st == cuda::Storage::bf16 ? float_to_bf16(v) : float_to_fp16(v);
  }
  return x;
}

double value(std::uint16_t bits, cuda::Storage st) {
  return st == cuda::Storage::bf16 ? bf16_to_float(bits) : fp16_to_float(bits);
}

// A matrix in a flat vector: element (i, k) at offset + i * row_stride + k * col_stride.
struct Strided {
  const std::vector<std::uint16_t>& data;
  std::size_t offset, row_stride, col_stride;
  double at(int i, int k, cuda::Storage st) const {
    return value(data[offset + static_cast<std::size_t>(i) * row_stride + static_cast<std::size_t>(k) * col_stride], st);
  }
};

// The float64 product A B ([rows][cols], summed over depth): the probes' reference.
std::vector<double> product(int rows, int cols, int depth, const Strided& a, const Strided& b, cuda::Storage st) {
  std::vector<double> c(static_cast<std::size_t>(rows) * cols, 0.0);
  for (int m = 0; m < rows; ++m)
    for (int j = 0; j < cols; ++j)
      for (int k = 0; k < depth; ++k) c[static_cast<std::size_t>(m) * cols + j] += a.at(m, k, st) * b.at(k, j, st);
  return c;
}

// Compares got with expected ([rows][cols]); on a mismatch, fails naming the probe, how many
// elements differ and the first few, and writes every element to LLMLAB_PROBE_DUMP_DIR/NAME.txt.
template <typename Got>
void check_equal(const std::string& name, const std::vector<Got>& got, const std::vector<double>& expected, int cols) {
  REQUIRE(got.size() == expected.size());
  int bad = 0;
  std::string first;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (static_cast<double>(got[i]) != expected[i] && bad++ < 4)
      first += fmt::format(" [{}][{}] {} (expected {});", i / static_cast<std::size_t>(cols),
                           i % static_cast<std::size_t>(cols), static_cast<double>(got[i]), expected[i]);
  if (bad > 0) {
    if (const char* dir = std::getenv("LLMLAB_PROBE_DUMP_DIR")) {
      std::ofstream dump(std::string(dir) + "/" + name + ".txt");
      dump << "# row col got expected\n";
      for (std::size_t i = 0; i < got.size(); ++i)
        dump << i / static_cast<std::size_t>(cols) << ' ' << i % static_cast<std::size_t>(cols) << ' '
             << static_cast<double>(got[i]) << ' ' << expected[i] << '\n';
    }
  }
  CHECK_MESSAGE(bad == 0, name, ": ", bad, " of ", got.size(), " elements differ:", first);
}

constexpr cuda::Storage kStorages[] = {cuda::Storage::bf16, cuda::Storage::fp16};

bool probes_run() {
  if (test::sm90_selected()) return true;
  MESSAGE("skipped: the sm90 kernels are not selected (no sm_90a build, no 9.x device, or LLMLAB_CUDA_TESTS_KERNELS=sm80)");
  return false;
}

}  // namespace

TEST_CASE("sm90 probe: a TMA box lands in 64-column panels, 128B-swizzled, rows past the tensor's end zero") {
  if (!probes_run()) return;
  constexpr int kTokens = 100, kHeads = 3, kHead = 2;
  for (int d : {64, 128})
    for (int box_rows : {64, 128})
      for (int row : {0, 40}) {
        const auto tensor = eighths(static_cast<std::size_t>(kTokens) * kHeads * d, 7, cuda::Storage::bf16);
        const auto got = cuda::probe::tma_box(cuda::Storage::bf16, tensor, kTokens, kHeads, d, box_rows, row, kHead);
        // Panel p, row r: 128 bytes at (p box_rows + r) 128, element c's 16-byte chunk c / 8 at
        // chunk (c / 8) ^ (r % 8) (the swizzle's XOR of address bits 4-6 with bits 7-9).
        std::vector<double> expected(static_cast<std::size_t>(d / 64) * box_rows * 128);
        for (int p = 0; p < d / 64; ++p)
          for (int r = 0; r < box_rows; ++r)
            for (int c = 0; c < 64; ++c) {
              const int token = row + r;
              const std::uint16_t bits =
                  token < kTokens ? tensor[(static_cast<std::size_t>(token) * kHeads + kHead) * d + 64 * p + c] : 0;
              const std::size_t at = static_cast<std::size_t>(p * box_rows + r) * 128 +
                                     static_cast<std::size_t>(((c / 8) ^ (r % 8)) * 16 + (c % 8) * 2);
              expected[at] = bits & 0xff;
              expected[at + 1] = bits >> 8;
            }
        check_equal(fmt::format("tma-box-d{}-rows{}-from{}", d, box_rows, row), got, expected, 128);
      }
}

TEST_CASE("sm90 probe: mma_rows_by_rows (S = Q K^T, dP = dO V^T) from K-major swizzled tiles") {
  if (!probes_run()) return;
  for (auto st : kStorages)
    for (int d : {64, 128})
      for (int n : {64, 128})
        for (int a_row0 : {0, 64}) {
          const auto a = eighths(128u * d, 11, st), b = eighths(static_cast<std::size_t>(n) * d, 13, st);
          const auto expected = product(64, n, d, {a, static_cast<std::size_t>(a_row0) * d, std::size_t(d), 1},
                                        {b, 0, 1, std::size_t(d)}, st);  // B = K-major rows, transposed
          check_equal(fmt::format("rows-by-rows-{}-d{}-n{}-row{}", storage_name(st), d, n, a_row0),
                      cuda::probe::rows_by_rows(st, d, n, a_row0, a, b), expected, n);
        }
}

TEST_CASE("sm90 probe: mma_fragments_by_tile (O += P V, dV += P^T dO) from register fragments and an MN-major tile") {
  if (!probes_run()) return;
  for (auto st : kStorages)
    for (int d : {64, 128})
      for (int kk : {64, 128}) {
        const auto a = eighths(64u * kk, 17, st), b = eighths(static_cast<std::size_t>(kk) * d, 19, st);
        const auto expected = product(64, d, kk, {a, 0, std::size_t(kk), 1}, {b, 0, std::size_t(d), 1}, st);
        check_equal(fmt::format("fragments-by-tile-{}-d{}-k{}", storage_name(st), d, kk),
                    cuda::probe::fragments_by_tile(st, d, kk, a, b), expected, d);
      }
}

TEST_CASE("sm90 probe: mma_tile_by_tile (dQ = dS K) from stored fragments, both operands MN-major") {
  if (!probes_run()) return;
  for (auto st : kStorages)
    for (int d : {64, 128})
      for (int col0 : {0, d / 2}) {
        const int n = d / 2;
        const auto a_t = eighths(128u * 64, 23, st), b = eighths(128u * d, 29, st);
        const auto expected =
            product(64, n, 128, {a_t, 0, 1, 64}, {b, static_cast<std::size_t>(col0), std::size_t(d), 1}, st);  // A stored transposed
        check_equal(fmt::format("tile-by-tile-{}-d{}-col{}", storage_name(st), d, col0),
                    cuda::probe::tile_by_tile(st, d, col0, a_t, b), expected, n);
      }
}
