// A micro-batch as the layers see it: device copies of the Batch's arrays (from tracked
// memory, sized for the plan's capacity) plus the shapes kernels need.
#pragma once

#include <cstdint>

namespace llmlab {

struct BatchView {
  std::int64_t tokens = 0;    // T: real tokens (no padding is ever computed)
  std::int64_t capacity = 0;  // rows x packing_length: what activation buffers are sized for
  std::int64_t rows = 0, seq_len = 0;
  std::int64_t docs = 0, max_seqlen = 0;
  const std::int32_t* ids = nullptr;         // [T]
  const std::int32_t* targets = nullptr;     // [T], -1 = none
  const std::int32_t* positions = nullptr;   // [T]
  const std::uint8_t* loss_mask = nullptr;   // [T]
  const std::int32_t* cu_seqlens = nullptr;  // [docs + 1]
  const std::int32_t* cu_seqlens_host = nullptr;
};

}  // namespace llmlab
