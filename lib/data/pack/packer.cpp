// The three packing strategies. See packer.hpp for what each does and costs.
#include "data/pack/packer.hpp"

#include <algorithm>
#include <map>
#include <numeric>

#include "core/error.hpp"

namespace llmlab {

const char* pack_strategy_name(PackStrategy s) {
  switch (s) {
    case PackStrategy::greedy: return "greedy";
    case PackStrategy::bfd: return "bfd";
    case PackStrategy::spfhp: return "spfhp";
  }
  return "?";
}

namespace {

using Rows = std::vector<std::vector<std::uint32_t>>;

Rows pack_greedy(std::span<const std::uint32_t> lengths, std::uint32_t capacity) {
  Rows rows;
  std::uint32_t used = capacity;  // forces a new row for the first document
  for (std::uint32_t i = 0; i < lengths.size(); ++i) {
    if (used + lengths[i] > capacity) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(i);
    used += lengths[i];
  }
  return rows;
}

// Indices sorted by length, longest first; equal lengths keep input order.
std::vector<std::uint32_t> longest_first(std::span<const std::uint32_t> lengths) {
  std::vector<std::uint32_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) { return lengths[a] > lengths[b]; });
  return order;
}

Rows pack_bfd(std::span<const std::uint32_t> lengths, std::uint32_t capacity) {
  Rows rows;
  // Open rows keyed by free slots; among equal free space the oldest row is filled first.
  std::multimap<std::uint32_t, std::size_t> by_free;
  for (std::uint32_t i : longest_first(lengths)) {
    auto it = by_free.lower_bound(lengths[i]);
    std::size_t row = 0;
    std::uint32_t free = 0;
    if (it == by_free.end()) {
      row = rows.size();
      rows.emplace_back();
      free = capacity;
    } else {
      row = it->second;
      free = it->first;
      by_free.erase(it);
    }
    rows[row].push_back(i);
    free -= lengths[i];
    if (free > 0) by_free.emplace(free, row);
  }
  return rows;
}

// SPFHP on the histogram: lengths are taken longest first; each goes to the open pack with the
// least free space that still fits it ("shortest pack first"), else opens a pack. Packs with
// the same contents are one "strategy" with a repeat count, so the work depends on the
// capacity, not on the number of documents.
Rows pack_spfhp(std::span<const std::uint32_t> lengths, std::uint32_t capacity) {
  std::vector<std::uint64_t> histogram(capacity + 1, 0);
  for (std::uint32_t l : lengths) ++histogram[l];

  struct Strategy {
    std::vector<std::uint32_t> contents;  // lengths in the pack
    std::uint64_t count = 0;               // packs with exactly these contents
  };
  std::vector<Strategy> strategies;
  // free space -> strategies with that much free space (indices into `strategies`)
  std::vector<std::vector<std::size_t>> open(capacity + 1);

  for (std::uint32_t len = capacity; len >= 1; --len) {
    std::uint64_t remaining = histogram[len];
    while (remaining > 0) {
      std::uint32_t free = len;
      while (free <= capacity && open[free].empty()) ++free;
      if (free > capacity) {
        // No open pack fits. Best fit would fill each new pack with as many of these as fit
        // (q), so: remaining / q full packs and one with the rest.
        const std::uint32_t q = capacity / len;
        auto open_packs = [&](std::uint32_t per_pack, std::uint64_t count) {
          strategies.push_back({std::vector<std::uint32_t>(per_pack, len), count});
          const std::uint32_t left = capacity - per_pack * len;
          if (left > 0) open[left].push_back(strategies.size() - 1);
        };
        if (remaining / q > 0) open_packs(q, remaining / q);
        if (remaining % q > 0) open_packs(static_cast<std::uint32_t>(remaining % q), 1);
        break;
      }
      const std::size_t s = open[free].back();
      const std::uint64_t take = std::min(remaining, strategies[s].count);
      remaining -= take;
      std::vector<std::uint32_t> contents = strategies[s].contents;
      contents.push_back(len);
      if (take == strategies[s].count) {  // every pack of this strategy takes one more
        open[free].pop_back();
        strategies[s].contents = contents;
        if (free - len > 0) open[free - len].push_back(s);
      } else {  // split the strategy: `take` packs grow, the rest stay open as they were
        strategies[s].count -= take;
        strategies.push_back({contents, take});
        if (free - len > 0) open[free - len].push_back(strategies.size() - 1);
      }
    }
  }

  // Map lengths back to documents: for each length, hand out its documents in input order.
  std::vector<std::vector<std::uint32_t>> by_length(capacity + 1);
  for (std::uint32_t i = 0; i < lengths.size(); ++i) by_length[lengths[i]].push_back(i);
  std::vector<std::size_t> next(capacity + 1, 0);
  Rows rows;
  for (const auto& s : strategies) {
    for (std::uint64_t k = 0; k < s.count; ++k) {
      std::vector<std::uint32_t> row;
      for (std::uint32_t len : s.contents) row.push_back(by_length[len][next[len]++]);
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

}  // namespace

std::vector<std::vector<std::uint32_t>> pack_documents(std::span<const std::uint32_t> lengths, std::uint32_t capacity,
                                                       PackStrategy strategy) {
  for (std::uint32_t l : lengths)
    if (l == 0 || l > capacity)
      throw Error("internal: packing a document of " + std::to_string(l) + " tokens into rows of " +
                  std::to_string(capacity));
  switch (strategy) {
    case PackStrategy::greedy: return pack_greedy(lengths, capacity);
    case PackStrategy::bfd: return pack_bfd(lengths, capacity);
    case PackStrategy::spfhp: return pack_spfhp(lengths, capacity);
  }
  return {};
}

double packing_efficiency(std::span<const std::uint32_t> lengths, std::size_t rows, std::uint32_t capacity) {
  if (rows == 0) return 1.0;
  double tokens = 0;
  for (std::uint32_t l : lengths) tokens += l;
  return tokens / (static_cast<double>(rows) * capacity);
}

}  // namespace llmlab
