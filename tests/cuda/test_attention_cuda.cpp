// The CUDA attention kernels (flash and naive, forward and backward) against the CPU backend's
// fp32 naive attention run on the same bf16/fp16-rounded inputs. FlashAttention's rule: flash's
// max abs error is at most twice the naive kernel's (same storage precision) plus 1e-3, both are
// finite, and tokens outside every document get exactly 0. The deterministic flash backward
// meets the same rule, its dk and dv are bitwise the default mode's, and a second run reproduces
// its dq, dk, dv bit for bit. Both kernel families are checked: sm80 (forward, and the backward
// in both modes on its out and lse) and, where the device has it, sm90 (forward, and the sm90
// backward on its out and lse, its atomic mode with dQ added both by atomics and by bulk
// reductions: dk, dv bitwise the same).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/half_float.hpp"
#include "core/random.hpp"
#include "kernels/attention/attention_cuda.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "ops/cuda/device_memory.hpp"
#include "tests/cuda/sm90_selected.hpp"

using namespace llmlab;

namespace {

constexpr double kFloor = 1e-3;  // absolute slack for errors both kernels keep tiny

std::uint16_t to_bits(float x, cuda::Storage st) { return st == cuda::Storage::bf16 ? float_to_bf16(x) : float_to_fp16(x); }
float from_bits(std::uint16_t h, cuda::Storage st) { return st == cuda::Storage::bf16 ? bf16_to_float(h) : fp16_to_float(h); }

// A packed batch, inputs already rounded to the storage type (the fp32 copies are exact).
struct Problem {
  AttentionShape s;
  cuda::Storage storage = cuda::Storage::bf16;
  std::vector<std::int32_t> cu;
  std::vector<float> q, k, v, dout;
};

std::vector<float> random_rounded(std::size_t n, std::uint64_t& state, cuda::Storage st) {
  std::vector<float> x(n);
  for (float& e : x) {
    const auto u = static_cast<float>(static_cast<double>(splitmix64(state) >> 11) * 0x1p-52 - 1.0);  // [-1, 1)
    e = from_bits(to_bits(u, st), st);
  }
  return x;
}

Problem make_problem(cuda::Storage st, const std::vector<std::int32_t>& lens, std::int32_t padding, std::int64_t Hq,
                     std::int64_t Hkv, std::int64_t D, bool causal, std::uint64_t seed) {
  Problem p;
  p.storage = st;
  p.cu = {0};
  for (std::int32_t len : lens) p.cu.push_back(p.cu.back() + len);
  p.s.tokens = p.cu.back() + padding;
  p.s.docs = static_cast<std::int64_t>(lens.size());
  p.s.max_seqlen = *std::max_element(lens.begin(), lens.end());
  p.s.heads = Hq;
  p.s.kv_heads = Hkv;
  p.s.head_dim = D;
  p.s.causal = causal;
  p.s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  const auto T = static_cast<std::size_t>(p.s.tokens);
  p.q = random_rounded(T * static_cast<std::size_t>(Hq * D), seed, st);
  p.k = random_rounded(T * static_cast<std::size_t>(Hkv * D), seed, st);
  p.v = random_rounded(T * static_cast<std::size_t>(Hkv * D), seed, st);
  p.dout = random_rounded(T * static_cast<std::size_t>(Hq * D), seed, st);
  return p;
}

struct Result {
  std::vector<float> out, lse, dq, dk, dv;
};

Result run_cpu(const Problem& p) {
  CpuBackend cpu(0);
  const auto& s = p.s;
  Result r{std::vector<float>(p.q.size()), std::vector<float>(static_cast<std::size_t>(s.heads * s.tokens)),
           std::vector<float>(p.q.size()), std::vector<float>(p.k.size()), std::vector<float>(p.v.size())};
  std::vector<float> probs(static_cast<std::size_t>(naive_attention_probs_elements(p.cu.data(), s.docs, s.heads)));
  std::vector<float> scratch(probs.size());
  cpu.attention_forward(AttentionImpl::naive, s, p.cu.data(), p.cu.data(), p.q.data(), p.k.data(), p.v.data(),
                        r.out.data(), r.lse.data(), probs.data());
  cpu.attention_backward(AttentionImpl::naive, s, p.cu.data(), p.cu.data(), p.q.data(), p.k.data(), p.v.data(),
                         r.out.data(), r.lse.data(), probs.data(), p.dout.data(), r.dq.data(), r.dk.data(),
                         r.dv.data(), scratch.data());
  return r;
}

std::vector<std::uint16_t> to_storage(const std::vector<float>& x, cuda::Storage st) {
  std::vector<std::uint16_t> h(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) h[i] = to_bits(x[i], st);
  return h;
}

DeviceBuffer upload(const std::vector<float>& x, cuda::Storage st) {
  const auto h = to_storage(x, st);
  DeviceBuffer b(h.size() * 2);
  copy_to_device(b.get(), h.data(), h.size() * 2);
  return b;
}

// Fills a device tensor with garbage (bytes 0x7e: 8e37 in bf16 and fp32, NaN in fp16) so that a
// kernel that forgets an element shows up as a big error, not as a lucky zero.
DeviceBuffer garbage(std::size_t elems, std::size_t elem_bytes) {
  std::vector<unsigned char> bytes(elems * elem_bytes, 0x7e);
  DeviceBuffer b(bytes.size());
  copy_to_device(b.get(), bytes.data(), bytes.size());
  return b;
}

std::vector<float> download(const DeviceBuffer& b, std::size_t n, cuda::Storage st) {
  std::vector<std::uint16_t> h(n);
  copy_to_host(h.data(), b.get(), n * 2);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = from_bits(h[i], st);
  return x;
}

std::vector<float> download_f32(const DeviceBuffer& b, std::size_t n) {
  std::vector<float> x(n);
  copy_to_host(x.data(), b.get(), n * 4);
  return x;
}

// A problem's inputs on the device and its outputs, filled with garbage until a kernel writes them.
struct DeviceProblem {
  const Problem& p;
  std::size_t nq, nkv, nlse;
  DeviceBuffer cu, q, k, v, dout, out, lse, dq, dk, dv;
  cuda::AttentionTensors t;

  explicit DeviceProblem(const Problem& problem)
      : p(problem),
        nq(p.q.size()),
        nkv(p.k.size()),
        nlse(static_cast<std::size_t>(p.s.tokens * p.s.heads)),
        cu(p.cu.size() * 4),
        q(upload(p.q, p.storage)),
        k(upload(p.k, p.storage)),
        v(upload(p.v, p.storage)),
        dout(upload(p.dout, p.storage)),
        out(garbage(nq, 2)),
        lse(garbage(nlse, 4)),
        dq(garbage(nq, 2)),
        dk(garbage(nkv, 2)),
        dv(garbage(nkv, 2)) {
    copy_to_device(cu.get(), p.cu.data(), p.cu.size() * 4);
    t.storage = p.storage;
    t.cu_seqlens = cu.as<std::int32_t>();
    t.cu_seqlens_host = p.cu.data();
    t.q = q.get();
    t.k = k.get();
    t.v = v.get();
    t.out = out.get();
    t.lse = lse.as<float>();
    t.dout = dout.get();
    t.dq = dq.get();
    t.dk = dk.get();
    t.dv = dv.get();
  }
  // Gradients back to garbage, so that the next backward must write every element again.
  void spoil_gradients() {
    dq = garbage(nq, 2);
    dk = garbage(nkv, 2);
    dv = garbage(nkv, 2);
    t.dq = dq.get();
    t.dk = dk.get();
    t.dv = dv.get();
  }
  Result download_all() const {
    return {download(out, nq, p.storage), download_f32(lse, nlse), download(dq, nq, p.storage),
            download(dk, nkv, p.storage), download(dv, nkv, p.storage)};
  }
};

Result run_naive(const Problem& p) {
  DeviceProblem d(p);
  DeviceBuffer saved(std::max<std::size_t>(cuda::naive_saved_bytes(p.s, p.cu.data()), 1));
  DeviceBuffer ws(std::max<std::size_t>(cuda::naive_backward_workspace_bytes(p.s, p.cu.data()), 1));
  cuda::naive_forward(p.s, d.t, saved.get(), nullptr);
  cuda::naive_backward(p.s, d.t, saved.get(), ws.get(), nullptr);
  cuda::synchronize();
  return d.download_all();
}

// One flash forward by the sm80 kernel, then on its out and lse the sm80 backward in the default
// (atomic dQ) mode and twice in the deterministic mode; each backward starts from garbage
// gradients. Where the sm90 kernels exist: the sm90 forward too, from garbage out and lse, and
// on its out and lse the sm90 backward in both modes (atomic dQ both by atomics and by bulk
// reductions; the deterministic one twice on a GPU; the emulator runs the same
// schedule-independent sums every time).
struct FlashRuns {
  Result atomic, deterministic, deterministic_again;
  bool has_sm90 = false;
  Result sm90, sm90_bulk, sm90_deterministic, sm90_deterministic_again;
};

#ifdef LLMLAB_CUDA_EMULATION
constexpr bool kRepeatSm90Deterministic = false;
#else
constexpr bool kRepeatSm90Deterministic = true;
#endif

FlashRuns run_flash(const Problem& p) {
  DeviceProblem d(p);
  DeviceBuffer fwd_ws(std::max<std::size_t>(cuda::flash_forward_workspace_bytes(p.s), 1));
  cuda::flash_forward(p.s, d.t, fwd_ws.get(), nullptr, cuda::FlashKernel::sm80);
  FlashRuns r;
  auto backward = [&](Result& result, bool deterministic, cuda::FlashKernel kernel,
                      cuda::DqReduction reduction = cuda::DqReduction::atomics) {
    DeviceBuffer bwd_ws(std::max<std::size_t>(cuda::flash_backward_workspace_bytes(p.s, deterministic), 1));
    d.spoil_gradients();
    cuda::flash_backward(p.s, d.t, bwd_ws.get(), nullptr, deterministic, kernel, reduction);
    cuda::synchronize();
    result = d.download_all();
  };
  for (Result* result : {&r.atomic, &r.deterministic, &r.deterministic_again})
    backward(*result, result != &r.atomic, cuda::FlashKernel::sm80);
  r.has_sm90 = test::sm90_selected();
  if (r.has_sm90) {
    DeviceProblem d90(p);  // fresh garbage in out and lse
    cuda::flash_forward(p.s, d90.t, fwd_ws.get(), nullptr, cuda::FlashKernel::sm90);
    d.t.out = d90.t.out;
    d.t.lse = d90.t.lse;
    backward(r.sm90, false, cuda::FlashKernel::sm90);
    backward(r.sm90_bulk, false, cuda::FlashKernel::sm90, cuda::DqReduction::bulk);
    const Result forward = d90.download_all();
    r.sm90.out = forward.out;
    r.sm90.lse = forward.lse;
    backward(r.sm90_deterministic, true, cuda::FlashKernel::sm90);
    if (kRepeatSm90Deterministic) backward(r.sm90_deterministic_again, true, cuda::FlashKernel::sm90);
  }
  return r;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string describe(const Problem& p) {
  std::string lens;
  for (std::size_t i = 0; i + 1 < p.cu.size(); ++i) {
    if (i) lens += ',';
    lens += std::to_string(p.cu[i + 1] - p.cu[i]);
  }
  return std::string(p.storage == cuda::Storage::bf16 ? "bf16" : "fp16") + " D=" + std::to_string(p.s.head_dim) +
         " Hq=" + std::to_string(p.s.heads) + " Hkv=" + std::to_string(p.s.kv_heads) +
         (p.s.causal ? " causal" : " full") + " docs=[" + lens + "] T=" + std::to_string(p.s.tokens);
}

// Max abs error over tokens inside documents; `row_of(i)` maps an element to its token.
struct Errors {
  double max_abs = 0;
  bool finite = true;
  bool padding_zero = true;
};

template <typename RowOf>
Errors compare(const std::vector<float>& got, const std::vector<float>& want, std::int64_t first, std::int64_t last,
               RowOf row_of) {
  Errors e;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) e.finite = false;
    const std::int64_t t = row_of(i);
    if (t < first || t >= last) {
      if (got[i] != 0.0f) e.padding_zero = false;
    } else {
      e.max_abs = std::max(e.max_abs, std::fabs(static_cast<double>(got[i]) - want[i]));
    }
  }
  return e;
}

// `which` names the flash variant ("flash", "flash deterministic").
void check_tensor(const char* name, const Problem& p, const char* which, const std::vector<float>& flash,
                  const std::vector<float>& naive, const std::vector<float>& ref, bool lse_layout) {
  const std::int64_t T = p.s.tokens, first = p.cu.front(), last = p.cu.back();
  const std::size_t width = ref.size() / static_cast<std::size_t>(T);  // elements per token row
  auto row_of = [&](std::size_t i) {
    return lse_layout ? static_cast<std::int64_t>(i % static_cast<std::size_t>(T))
                      : static_cast<std::int64_t>(i / width);
  };
  const Errors ef = compare(flash, ref, first, last, row_of), en = compare(naive, ref, first, last, row_of);
  const std::string where = std::string(name) + " " + describe(p) + ": " + which + " max abs error " +
                            std::to_string(ef.max_abs) + ", naive " + std::to_string(en.max_abs);
  CHECK_MESSAGE(ef.finite, which << " " << where << " has a non-finite value");
  CHECK_MESSAGE(en.finite, "naive " << where << " has a non-finite value");
  CHECK_MESSAGE(ef.padding_zero, which << " " << where << ": padding tokens are not exactly 0");
  CHECK_MESSAGE(en.padding_zero, "naive " << where << ": padding tokens are not exactly 0");
  CHECK_MESSAGE(ef.max_abs <= 2 * en.max_abs + kFloor, where);
  MESSAGE(where);
}

void check_problem(const Problem& p) {
  const Result ref = run_cpu(p), naive = run_naive(p);
  const FlashRuns flash = run_flash(p);
  // out and lse come from the one forward both backward modes share.
  check_tensor("out", p, "flash", flash.atomic.out, naive.out, ref.out, false);
  check_tensor("lse", p, "flash", flash.atomic.lse, naive.lse, ref.lse, true);
  if (flash.has_sm90) {
    check_tensor("out", p, "flash sm90", flash.sm90.out, naive.out, ref.out, false);
    check_tensor("lse", p, "flash sm90", flash.sm90.lse, naive.lse, ref.lse, true);
    check_tensor("dq", p, "flash sm90", flash.sm90.dq, naive.dq, ref.dq, false);
    check_tensor("dk", p, "flash sm90", flash.sm90.dk, naive.dk, ref.dk, false);
    check_tensor("dv", p, "flash sm90", flash.sm90.dv, naive.dv, ref.dv, false);
    check_tensor("dq", p, "flash sm90 deterministic", flash.sm90_deterministic.dq, naive.dq, ref.dq, false);
    check_tensor("dq", p, "flash sm90 bulk dQ", flash.sm90_bulk.dq, naive.dq, ref.dq, false);
    const std::string what = describe(p);
    CHECK_MESSAGE(bitwise_equal(flash.sm90_bulk.dk, flash.sm90.dk), "sm90 bulk-dQ dk != atomic: " << what);
    CHECK_MESSAGE(bitwise_equal(flash.sm90_bulk.dv, flash.sm90.dv), "sm90 bulk-dQ dv != atomic: " << what);
    CHECK_MESSAGE(bitwise_equal(flash.sm90_deterministic.dk, flash.sm90.dk), "sm90 deterministic dk != atomic: " << what);
    CHECK_MESSAGE(bitwise_equal(flash.sm90_deterministic.dv, flash.sm90.dv), "sm90 deterministic dv != atomic: " << what);
    if (kRepeatSm90Deterministic) {
      const Result& again = flash.sm90_deterministic_again;
      CHECK_MESSAGE(bitwise_equal(again.dq, flash.sm90_deterministic.dq), "sm90 dq not reproduced: " << what);
      CHECK_MESSAGE(bitwise_equal(again.dk, flash.sm90_deterministic.dk), "sm90 dk not reproduced: " << what);
      CHECK_MESSAGE(bitwise_equal(again.dv, flash.sm90_deterministic.dv), "sm90 dv not reproduced: " << what);
    }
  } else {
    MESSAGE("the sm90 kernels are not checked: " << (cuda::device_name()) << " does not run it");
  }
  for (const auto& [which, r] : {std::pair<const char*, const Result*>{"flash", &flash.atomic},
                                 std::pair<const char*, const Result*>{"flash deterministic", &flash.deterministic}}) {
    check_tensor("dq", p, which, r->dq, naive.dq, ref.dq, false);
    check_tensor("dk", p, which, r->dk, naive.dk, ref.dk, false);
    check_tensor("dv", p, which, r->dv, naive.dv, ref.dv, false);
  }
  const std::string what = describe(p);
  CHECK_MESSAGE(bitwise_equal(flash.deterministic.dk, flash.atomic.dk), "deterministic dk != atomic dk: " << what);
  CHECK_MESSAGE(bitwise_equal(flash.deterministic.dv, flash.atomic.dv), "deterministic dv != atomic dv: " << what);
  CHECK_MESSAGE(bitwise_equal(flash.deterministic_again.dq, flash.deterministic.dq), "dq not reproduced: " << what);
  CHECK_MESSAGE(bitwise_equal(flash.deterministic_again.dk, flash.deterministic.dk), "dk not reproduced: " << what);
  CHECK_MESSAGE(bitwise_equal(flash.deterministic_again.dv, flash.deterministic.dv), "dv not reproduced: " << what);
}

// Documents of 1, 17, 0 (empty), 130 and 300 tokens (none a multiple of any block size), then
// 5 padding tokens; 4 q heads over 4, 2 or 1 kv heads (GQA ratios 1, 2, 4).
void check_all(cuda::Storage st, std::int64_t D) {
  std::uint64_t seed = 1234;
  for (const bool causal : {false, true})
    for (const std::int64_t Hkv : {4, 2, 1}) {
      const Problem p = make_problem(st, {1, 17, 0, 130, 300}, 5, 4, Hkv, D, causal, seed++);
      check_problem(p);
    }
}

}  // namespace

TEST_CASE("cuda attention bf16 D=64: flash and naive against the CPU") { check_all(cuda::Storage::bf16, 64); }
TEST_CASE("cuda attention bf16 D=128: flash and naive against the CPU") { check_all(cuda::Storage::bf16, 128); }
TEST_CASE("cuda attention fp16 D=64: flash and naive against the CPU") { check_all(cuda::Storage::fp16, 64); }
TEST_CASE("cuda attention fp16 D=128: flash and naive against the CPU") { check_all(cuda::Storage::fp16, 128); }

TEST_CASE("cuda attention: one long causal document spanning many blocks, GQA 2") {
  const Problem p = make_problem(cuda::Storage::bf16, {1000}, 3, 4, 2, 128, true, 99);
  check_problem(p);
}

// The persistent sm90 forward takes several query tiles per CTA only when there are more tiles
// than multiprocessors: one document per multiprocessor, of 2 (192 tokens) or 1 (100) query
// blocks, times 4 heads, is 6 tiles per multiprocessor on average, whatever the device.
TEST_CASE("cuda attention: more query tiles than multiprocessors, several per persistent CTA") {
  const int docs = cuda::multiprocessor_count();
  std::vector<std::int32_t> lens;
  for (int d = 0; d < docs; ++d) lens.push_back(d % 2 ? 100 : 192);
  MESSAGE(docs << " documents: " << docs * 6 << " query tiles of 128 rows over " << docs << " multiprocessors");
  check_problem(make_problem(cuda::Storage::bf16, lens, 0, 4, 2, 64, true, 2024));
}

TEST_CASE("cuda attention: no documents at all, every token padding") {
  Problem p = make_problem(cuda::Storage::bf16, {0}, 7, 2, 1, 64, true, 7);
  p.s.max_seqlen = 0;
  const FlashRuns flash = run_flash(p);
  const Result naive = run_naive(p);
  std::vector<const Result*> results{&flash.atomic, &flash.deterministic, &flash.deterministic_again, &naive};
  if (flash.has_sm90) results.insert(results.end(), {&flash.sm90, &flash.sm90_deterministic});
  for (const Result* r : results)
    for (const std::vector<float>* x : {&r->out, &r->lse, &r->dq, &r->dk, &r->dv})
      CHECK(std::all_of(x->begin(), x->end(), [](float e) { return e == 0.0f; }));
}

TEST_CASE("cuda device state: name and event timing") {
  const std::string name = cuda::device_name();
  CHECK(name.find("sm_") != std::string::npos);
  const auto ms = cuda::time_on_device_ms([] {}, 1, 3, nullptr);
  CHECK(ms.size() == 3);
  for (double m : ms) CHECK(m >= 0.0);
}
