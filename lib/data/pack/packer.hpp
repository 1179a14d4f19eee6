// Packing: assigning documents (lengths <= capacity) to rows of `capacity` token slots.
//   greedy  lmms-engine's next-fit: one open row, appended to until the next document would
//           overflow it. Keeps document order; 73-93% efficient on chat data.
//   bfd     best-fit decreasing: longest first, each into the fullest row it still fits
//           (a balanced tree of rows by free space: O(n log n)).
//   spfhp   Krell et al.'s shortest-pack-first histogram packing (arXiv 2107.02027): the same
//           best-fit-decreasing decisions made on the length histogram, O(capacity^2)
//           independent of the number of documents, then mapped back to documents.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "spec/settings.hpp"

namespace llmlab {

const char* pack_strategy_name(PackStrategy s);

// Rows as lists of indices into `lengths`. Every index appears exactly once; every length must
// be in [1, capacity]. Deterministic: ties are broken by index.
std::vector<std::vector<std::uint32_t>> pack_documents(std::span<const std::uint32_t> lengths, std::uint32_t capacity,
                                                       PackStrategy strategy);

// Real tokens / slots of the rows (1.0 = no padding).
double packing_efficiency(std::span<const std::uint32_t> lengths, std::size_t rows, std::uint32_t capacity);

}  // namespace llmlab
