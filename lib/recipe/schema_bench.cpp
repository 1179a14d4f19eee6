// bench-attn's recipe keys (bench.*): the sweep of attention shapes, the implementations and
// device, and how to time and check them. Lists accept a YAML list or "a,b,c".
#include "recipe/field_builders.hpp"

namespace llmlab {

using namespace fields;

namespace {

// Parsers of one list item's text, each throwing InputError naming the key.
auto positive_integer(long long hi) {
  return [hi](const std::string& text, const SourceLoc& where, const std::string& key) -> std::int64_t {
    long long x = 0;
    std::size_t used = 0;
    try {
      x = std::stoll(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size()) throw InputError(where, key, fmt::format("expected an integer, got '{}'", text));
    if (x < 1 || x > hi) throw InputError(where, key, fmt::format("must be in [1, {}] (got {})", hi, x));
    return x;
  };
}

template <class E>
auto one_of(std::vector<std::pair<std::string, E>> options) {
  return [options](const std::string& text, const SourceLoc& where, const std::string& key) -> E {
    return parse_choice(text, options, where, key);
  };
}

// A list field over an enum, printed back by the enum's names.
template <class E, class Get, class Name>
Field enum_list(std::string key, Get get, std::vector<std::pair<std::string, E>> options, Name name, std::string doc) {
  return list(key, join(option_names(options), "|"), get, one_of(options), name, std::move(doc));
}

const char* bool_name(bool b) { return b ? "true" : "false"; }
std::string integer_name(std::int64_t x) { return std::to_string(x); }

}  // namespace

void add_bench_fields(std::vector<Field>& s) {
  s.push_back(choice<Device>("bench.device", AT(bench.device), {{"cpu", Device::cpu}, {"cuda", Device::cuda}},
                             "bench-attn: where the kernels run"));
  s.push_back(enum_list<AttentionImpl>("bench.impl", AT(bench.impls),
                                       {{"naive", AttentionImpl::naive}, {"flash", AttentionImpl::flash}},
                                       attention_name, "bench-attn: implementations timed side by side"));
  s.push_back(list("bench.seq_lens", "integers >= 1", AT(bench.seq_lens), positive_integer(1ll << 24), integer_name,
                   "bench-attn: packed row lengths swept"));
  s.push_back(list("bench.head_dim", "integers >= 1", AT(bench.head_dims), positive_integer(1024), integer_name,
                   "bench-attn: head dimensions swept"));
  s.push_back(integer("bench.heads", AT(bench.heads), 1, 1024, "bench-attn: query heads"));
  s.push_back(integer("bench.kv_heads", AT(bench.kv_heads), 0, 1024,
                      "bench-attn: key/value heads (divides heads; grouped-query); 0 = heads"));
  s.push_back(integer("bench.tokens", AT(bench.tokens), 1, kMaxInt,
                      "bench-attn: tokens per batch; batch = max(1, tokens / seq_len) rows"));
  s.push_back(enum_list<bool>("bench.causal", AT(bench.causal), {{"true", true}, {"false", false}}, bool_name,
                              "bench-attn: causal masking, swept"));
  s.push_back(enum_list<BenchMode>("bench.mode", AT(bench.modes),
                                   {{"fwd", BenchMode::fwd}, {"bwd", BenchMode::bwd}, {"fwd_bwd", BenchMode::fwd_bwd}},
                                   bench_mode_name, "bench-attn: passes timed (bwd: the backward alone)"));
  s.push_back(enum_list<BenchLayout>("bench.layout", AT(bench.layouts),
                                     {{"dense", BenchLayout::dense}, {"varlen", BenchLayout::varlen}},
                                     bench_layout_name, "bench-attn: one document per row, or packed documents"));
  s.push_back(path("bench.doc_lengths", AT(bench.doc_lengths), {"lognormal", "equal"},
                   "bench-attn varlen document lengths: lognormal (median seq_len/8), equal (4 per row) or a "
                   "pack-data shard whose rows' documents are reused"));
  s.push_back(choice<BenchDtype>("bench.dtype", AT(bench.dtype),
                                 {{"auto", BenchDtype::automatic}, {"fp32", BenchDtype::fp32},
                                  {"bf16", BenchDtype::bf16}, {"fp16", BenchDtype::fp16}},
                                 "bench-attn: storage type (cpu: fp32; cuda: bf16|fp16); auto = fp32 cpu, bf16 cuda"));
  s.push_back(integer("bench.warmup", AT(bench.warmup), 0, 1000, "bench-attn: untimed runs before timing"));
  s.push_back(integer("bench.repeats", AT(bench.repeats), 1, 100000, "bench-attn: timed runs (the median is reported)"));
  s.push_back(integer("bench.threads", AT(bench.threads), 0, 4096, "bench-attn: cpu threads; 0 = all cores"));
  s.push_back(boolean("bench.check", AT(bench.check), "bench-attn: measure the error against a float64 reference"));
  s.push_back(integer("bench.seed", AT(bench.seed), 0, kMaxInt, "bench-attn: inputs and document lengths"));
  s.push_back(bytes("bench.rotate_bytes", AT(bench.rotate_bytes),
                    "bench-attn: forward inputs rotate through copies of at least this much memory in all "
                    "(so timed runs do not find them in cache)"));
  s.push_back(bytes("bench.max_naive_bytes", AT(bench.max_naive_bytes),
                    "bench-attn: skip naive where its probabilities exceed this; 0 = half the device memory"));
  s.push_back(boolean("bench.deterministic", AT(bench.deterministic),
                      "bench-attn: cuda flash backward without atomics, bitwise reproducible (more recompute); "
                      "cpu kernels always are"));
  s.push_back(choice<BenchFlashKernel>(
      "bench.flash_kernel", AT(bench.flash_kernel),
      {{"auto", BenchFlashKernel::automatic}, {"sm80", BenchFlashKernel::sm80}, {"sm90", BenchFlashKernel::sm90}},
      "bench-attn: cuda flash forward kernel: sm80 (mma.sync, cp.async), sm90 (wgmma, TMA, warp "
      "specialisation; Hopper only); auto = sm90 where the device has it"));
  s.push_back(choice<BenchDqReduction>(
      "bench.dq_reduction", AT(bench.dq_reduction),
      {{"atomics", BenchDqReduction::atomics}, {"bulk", BenchDqReduction::bulk}},
      "bench-attn: how the cuda sm90 flash backward adds dQ: fp32 atomics (FlashAttention-2's way) or bulk "
      "reductions of rows staged in shared memory (FlashAttention-3's); bulk needs the sm90 kernel and "
      "deterministic=false"));
}

}  // namespace llmlab
