// The float64 attention reference at sampled rows and columns (see attention_reference.hpp).
#include "bench/attention_reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/random.hpp"

namespace llmlab {

void AttentionError::add(double result, double reference) {
  if (!std::isfinite(result)) finite = false;
  max_abs = std::max(max_abs, std::abs(result - reference));
  max_ref = std::max(max_ref, std::abs(reference));
  ++compared;
}

void AttentionError::merge(const AttentionError& other) {
  max_abs = std::max(max_abs, other.max_abs);
  max_ref = std::max(max_ref, other.max_ref);
  compared += other.compared;
  finite = finite && other.finite;
}

namespace {

// Column samples cost (rows that see them) x len x D x group x ~8 flops of float64 work;
// this bounds it to a second or two of one core.
constexpr double kColumnBudgetFlops = 2e9;

struct Views {
  const AttentionCase& c;
  const AttentionInputs& in;
  double scale;
  std::int64_t group() const { return c.heads / c.kv_heads; }
  const float* q(std::int64_t t, std::int64_t h) const { return in.q.data() + (t * c.heads + h) * c.head_dim; }
  const float* dout(std::int64_t t, std::int64_t h) const { return in.dout.data() + (t * c.heads + h) * c.head_dim; }
  const float* k(std::int64_t t, std::int64_t g) const { return in.k.data() + (t * c.kv_heads + g) * c.head_dim; }
  const float* v(std::int64_t t, std::int64_t g) const { return in.v.data() + (t * c.kv_heads + g) * c.head_dim; }
};

double dot(const float* a, const float* b, std::int64_t n) {
  double acc = 0;
  for (std::int64_t i = 0; i < n; ++i) acc += static_cast<double>(a[i]) * b[i];
  return acc;
}
double dot(const float* a, const std::vector<double>& b) {
  double acc = 0;
  for (std::size_t i = 0; i < b.size(); ++i) acc += a[i] * b[i];
  return acc;
}

// Everything about query row `r` of a document (tokens [begin, begin + len)) and head h:
// out, lse, Drow = dO . out and dq.
struct RowResult {
  std::vector<double> out, dq;
  double lse = 0, drow = 0;
};

RowResult reference_row(const Views& x, std::int64_t begin, std::int64_t len, std::int64_t r, std::int64_t h,
                        bool want_dq) {
  const std::int64_t D = x.c.head_dim, g = h / x.group(), t = begin + r;
  const std::int64_t visible = x.c.causal ? r + 1 : len;
  std::vector<double> s(static_cast<std::size_t>(visible));
  double m = -std::numeric_limits<double>::infinity();
  for (std::int64_t j = 0; j < visible; ++j) {
    s[j] = x.scale * dot(x.q(t, h), x.k(begin + j, g), D);
    m = std::max(m, s[j]);
  }
  double l = 0;
  for (double& e : s) l += (e = std::exp(e - m));
  RowResult res;
  res.out.assign(static_cast<std::size_t>(D), 0.0);
  for (std::int64_t j = 0; j < visible; ++j) {
    const float* vj = x.v(begin + j, g);
    const double p = s[j] / l;
    for (std::int64_t d = 0; d < D; ++d) res.out[d] += p * vj[d];
  }
  res.lse = m + std::log(l);
  res.drow = dot(x.dout(t, h), res.out);
  if (!want_dq) return res;
  res.dq.assign(static_cast<std::size_t>(D), 0.0);
  for (std::int64_t j = 0; j < visible; ++j) {
    const double p = s[j] / l;
    const double ds = p * (dot(x.dout(t, h), x.v(begin + j, g), D) - res.drow) * x.scale;
    const float* kj = x.k(begin + j, g);
    for (std::int64_t d = 0; d < D; ++d) res.dq[d] += ds * kj[d];
  }
  return res;
}

struct DocSpan {
  std::int64_t begin = 0, len = 0;
};

DocSpan doc_of(const AttentionCase& c, std::int64_t i) { return {c.cu_seqlens[i], c.cu_seqlens[i + 1] - c.cu_seqlens[i]}; }

}  // namespace

AttentionReference::AttentionReference(const AttentionCase& c, const AttentionInputs& in, std::uint64_t seed, int rows,
                                       int columns)
    : heads_(c.heads), kv_heads_(c.kv_heads), head_dim_(c.head_dim) {
  const Views x{c, in, 1.0 / std::sqrt(static_cast<double>(c.head_dim))};
  std::uint64_t state = seed ^ 0xa77e57ull;
  if (c.docs() <= 0 || c.tokens() == 0) return;

  // Query rows: the edges of the first and last documents, then seeded draws.
  struct Pick {
    std::int64_t doc, r, h;
  };
  std::vector<Pick> picks;
  for (std::int64_t i : {std::int64_t{0}, c.docs() - 1}) {
    const DocSpan d = doc_of(c, i);
    if (d.len == 0) continue;
    picks.push_back({i, 0, 0});
    picks.push_back({i, d.len - 1, c.heads - 1});
  }
  while (static_cast<int>(picks.size()) < rows) {
    const auto t = static_cast<std::int32_t>(uniform_below(state, static_cast<std::uint64_t>(c.tokens())));
    const auto i = std::upper_bound(c.cu_seqlens.begin(), c.cu_seqlens.end(), t) - c.cu_seqlens.begin() - 1;
    picks.push_back({i, t - c.cu_seqlens[i], static_cast<std::int64_t>(uniform_below(state, static_cast<std::uint64_t>(c.heads)))});
  }
  rows_.resize(picks.size());
#pragma omp parallel for schedule(dynamic)
  for (std::size_t n = 0; n < picks.size(); ++n) {
    const DocSpan d = doc_of(c, picks[n].doc);
    RowResult res = reference_row(x, d.begin, d.len, picks[n].r, picks[n].h, true);
    rows_[n] = Row{d.begin + picks[n].r, picks[n].h, std::move(res.out), std::move(res.dq)};
  }

  // Key columns: in the longest document, one kv head, as many rows' statistics as the budget allows.
  std::int64_t longest = 0;
  for (std::int64_t i = 1; i < c.docs(); ++i)
    if (doc_of(c, i).len > doc_of(c, longest).len) longest = i;
  const DocSpan d = doc_of(c, longest);
  const std::int64_t g = static_cast<std::int64_t>(uniform_below(state, static_cast<std::uint64_t>(c.kv_heads)));
  const double row_cost = 8.0 * static_cast<double>(d.len) * static_cast<double>(c.head_dim * x.group());
  const auto affordable = static_cast<std::int64_t>(kColumnBudgetFlops / row_cost);
  std::int64_t first_row = 0;  // rows [first_row, len) need statistics
  if (c.causal) first_row = std::max<std::int64_t>(0, d.len - affordable);
  else if (affordable < d.len) return;  // every row sees every column: too long to afford
  if (first_row >= d.len) return;

  std::vector<std::int64_t> cols;
  for (int n = 0; n < columns; ++n) {
    const std::int64_t j = n == 0 ? d.len - 1 : n == 1 ? first_row
                                              : first_row + static_cast<std::int64_t>(uniform_below(
                                                                state, static_cast<std::uint64_t>(d.len - first_row)));
    if (std::find(cols.begin(), cols.end(), j) == cols.end()) cols.push_back(j);
  }
  // Statistics (lse, Drow) of rows [first_row, len) of every q head of group g.
  const std::int64_t stat_rows = d.len - first_row, group = x.group();
  std::vector<double> lse(static_cast<std::size_t>(stat_rows * group)), drow(lse.size());
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (std::int64_t hg = 0; hg < group; ++hg)
    for (std::int64_t i = 0; i < stat_rows; ++i) {
      const RowResult res = reference_row(x, d.begin, d.len, first_row + i, g * group + hg, false);
      lse[hg * stat_rows + i] = res.lse;
      drow[hg * stat_rows + i] = res.drow;
    }
  const std::int64_t D = c.head_dim;
  columns_.resize(cols.size());
#pragma omp parallel for schedule(dynamic)
  for (std::size_t n = 0; n < cols.size(); ++n) {
    const std::int64_t j = cols[n], tj = d.begin + j;
    Column col{tj, g, std::vector<double>(static_cast<std::size_t>(D)), std::vector<double>(static_cast<std::size_t>(D))};
    for (std::int64_t hg = 0; hg < group; ++hg) {
      const std::int64_t h = g * group + hg;
      for (std::int64_t i = c.causal ? j : 0; i < d.len; ++i) {
        const std::int64_t ti = d.begin + i, si = hg * stat_rows + (i - first_row);
        const double p = std::exp(x.scale * dot(x.q(ti, h), x.k(tj, g), D) - lse[si]);
        const double ds = p * (dot(x.dout(ti, h), x.v(tj, g), D) - drow[si]) * x.scale;
        const float* qi = x.q(ti, h);
        const float* doi = x.dout(ti, h);
        for (std::int64_t e = 0; e < D; ++e) {
          col.dv[e] += p * doi[e];
          col.dk[e] += ds * qi[e];
        }
      }
    }
    columns_[n] = std::move(col);
  }
}

AttentionError AttentionReference::forward_error(const AttentionOutputs& o) const {
  AttentionError e;
  for (const Row& r : rows_)
    for (std::int64_t d = 0; d < head_dim_; ++d) e.add(o.out[(r.token * heads_ + r.head) * head_dim_ + d], r.out[d]);
  return e;
}

AttentionError AttentionReference::backward_error(const AttentionOutputs& o) const {
  AttentionError e;
  for (const Row& r : rows_)
    for (std::int64_t d = 0; d < head_dim_; ++d) e.add(o.dq[(r.token * heads_ + r.head) * head_dim_ + d], r.dq[d]);
  for (const Column& c : columns_)
    for (std::int64_t d = 0; d < head_dim_; ++d) {
      const std::int64_t at = (c.token * kv_heads_ + c.kv_head) * head_dim_ + d;
      e.add(o.dk[at], c.dk[d]);
      e.add(o.dv[at], c.dv[d]);
    }
  return e;
}

}  // namespace llmlab
