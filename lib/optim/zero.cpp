#include "optim/zero.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace llmlab {

namespace {
// All-gathers move no scratch; this only keeps each call's counts within MPI's int range.
constexpr std::int64_t kGatherChunk = std::int64_t{1} << 28;
}  // namespace

// The communicator's reduction scratch, from the engine's one tracked buffer: at most one
// reduction holds it at a time (the engine waits for the previous one before starting the
// next), which is what the Plan's "reduction scratch" counts.
class ZeroEngine::Scratch final : public ScratchAllocator {
 public:
  Scratch(float* data, std::int64_t elements) : data_(data), bytes_(static_cast<std::size_t>(elements) * sizeof(float)) {}
  void* allocate(std::size_t bytes) override {
    if (busy_ || bytes > bytes_)
      throw Error(fmt::format("internal: ZeRO reduction scratch asked for {} bytes ({} held, {} busy)", bytes, bytes_, busy_));
    busy_ = true;
    return data_;
  }
  void release(void*) override { busy_ = false; }

 private:
  float* data_;
  std::size_t bytes_;
  bool busy_ = false;
};

WeightsLayout zero_layout(int stage, const Communicator& comm) {
  WeightsLayout l;
  l.world = comm.world_size();
  l.rank = comm.rank();
  l.shard_params = stage >= 3 && l.world > 1;
  l.shard_grads = stage >= 2 && l.world > 1;
  return l;
}

ZeroEngine::ZeroEngine(Weights& weights, Communicator& comm, Backend& backend, TrackedMemory& mem, const RunSettings& run)
    // Alone, every stage is stage 0: there is nothing to shard or reduce.
    : w_(weights), comm_(comm), be_(backend), mem_(mem),
      stage_(comm.world_size() > 1 ? static_cast<int>(run.zero.stage) : 0), world_(comm.world_size()),
      rank_(comm.rank()) {
  if (run.dist.world_size != world_)
    throw Error(fmt::format("internal: planned for {} ranks, running {}", run.dist.world_size, world_));
  const WeightsLayout want = zero_layout(stage_, comm);
  if (w_.layout().shard_params != want.shard_params || w_.layout().shard_grads != want.shard_grads ||
      w_.layout().world != world_ || w_.layout().rank != rank_)
    throw Error("internal: the weights were not laid out for this ZeRO stage and world");
  chunk_ = zero_reduce_chunk(w_.numel(), run);

  const auto& table = w_.table();
  for (const ParamUnit& u : w_.units()) {
    const std::int64_t begin = w_.offset(u.first);
    const std::int64_t end = w_.offset(u.last - 1) + table[u.last - 1].numel();
    own_.push_back({begin, end, 0});
    std::vector<Range> ranges{{begin, end, 0}};
    std::int64_t pos = end - begin;
    for (std::size_t t : u.borrowed) {
      ranges.push_back({w_.offset(t), w_.offset(t) + table[t].numel(), pos});
      pos += table[t].numel();
    }
    ranges_.push_back(std::move(ranges));
  }
  bucket_of_unit_.assign(ranges_.size(), -1);

  ParameterCounts counts;
  counts.total = w_.numel();
  for (const ParamUnit& u : w_.units()) counts.largest_unit = std::max(counts.largest_unit, u.numel);
  const ZeroBuffers z = zero_buffers(counts, run);
  if (z.gather_slots > 0) {
    gather_buffer_ = Tracked<float>(mem_, z.gather_slots * z.gather_slot, Category::comm);
    for (std::int64_t s = 0; s < z.gather_slots; ++s) {
      slots_.emplace_back();
      slots_.back().data = gather_buffer_.get() + s * z.gather_slot;
    }
  }
  if (z.grad_buckets > 0) {
    bucket_buffer_ = Tracked<float>(mem_, z.grad_buckets * z.grad_bucket, Category::comm);
    for (std::int64_t b = 0; b < z.grad_buckets; ++b) buckets_.push_back(bucket_buffer_.get() + b * z.grad_bucket);
  }
  if (z.scratch > 0) {
    scratch_buffer_ = Tracked<float>(mem_, z.scratch, Category::comm);
    scratch_ = std::make_unique<Scratch>(scratch_buffer_.get(), z.scratch);
    comm_.set_scratch_allocator(scratch_.get());
  }
  // Stage 3 binds a unit's values only while it is gathered.
  if (w_.params_sharded())
    for (std::size_t t = 0; t < table.size(); ++t) w_.bind(t, nullptr, w_.bound(t).g);
}

ZeroEngine::~ZeroEngine() {
  try {
    scratch_handle_.wait();
    for (auto& h : gathers_) h.wait();
    for (auto& s : slots_)
      for (auto& h : s.pending) h.wait();
  } catch (...) {  // the communicator is failed(): the app aborts the job
  }
  if (scratch_) comm_.set_scratch_allocator(nullptr);
}

std::vector<std::int64_t> ZeroEngine::counts(std::int64_t begin, std::int64_t end) const {
  std::vector<std::int64_t> c(static_cast<std::size_t>(world_));
  const std::int64_t S = w_.shard_elements(), n = w_.numel();
  for (int r = 0; r < world_; ++r) {
    const std::int64_t lo = std::max(begin, std::min(n, r * S)), hi = std::min(end, std::min(n, (r + 1) * S));
    c[static_cast<std::size_t>(r)] = std::max<std::int64_t>(0, hi - lo);
  }
  return c;
}


void ZeroEngine::reduce_range(const Range& r, float* src, bool accumulate_into_shard) {
  for (std::int64_t c0 = r.begin; c0 < r.end; c0 += chunk_) {
    const std::int64_t c1 = std::min(r.end, c0 + chunk_);
    float* in = src + (c0 - r.begin);
    scratch_handle_.wait();  // one reduction holds the scratch at a time
    if (stage_ == 0) {
      scratch_handle_ = comm_.all_reduce_sum_async(in, c1 - c0);
      continue;
    }
    const std::vector<std::int64_t> cnt = counts(c0, c1);
    const std::int64_t mine = cnt[static_cast<std::size_t>(rank_)];
    const std::int64_t at = std::max(c0, w_.shard_begin());
    // Stage 1 reduces in place in the whole buffer; stages 2-3 add into the gradient shard.
    float* out = mine == 0 ? in : accumulate_into_shard ? w_.grad_at(at) : src + (at - r.begin);
    scratch_handle_ = comm_.reduce_scatter_sum_v_async(in, cnt, out, accumulate_into_shard);
  }
}

void ZeroEngine::bind_unit(std::size_t unit, float* w, float* g) {
  const ParamUnit& u = w_.units()[unit];
  const std::int64_t base = own_[unit].begin;
  auto at = [](float* p, std::int64_t pos) { return p ? p + pos : nullptr; };
  for (std::size_t t = u.first; t < u.last; ++t) w_.bind(t, at(w, w_.offset(t) - base), at(g, w_.offset(t) - base));
  for (std::size_t k = 0; k < u.borrowed.size(); ++k)
    w_.bind(u.borrowed[k], at(w, ranges_[unit][k + 1].pos), at(g, ranges_[unit][k + 1].pos));
}

void ZeroEngine::begin_micro_batch(bool training, bool last) {
  if (training && !trace_.empty()) traced_ = true;  // the first training micro-batch recorded it
  training_ = training;
  last_ = last;
  trace_pos_ = 0;
  on_trace_ = training && traced_;
}

ZeroEngine::Slot& ZeroEngine::gather_into_slot(std::size_t unit, const std::vector<std::size_t>& window) {
  Slot* victim = nullptr;
  for (Slot& s : slots_) {
    if (s.pinned || (s.unit >= 0 && std::find(window.begin(), window.end(), static_cast<std::size_t>(s.unit)) != window.end()))
      continue;
    if (!victim || (s.unit < 0 && victim->unit >= 0) || ((s.unit < 0) == (victim->unit < 0) && s.last_use < victim->last_use))
      victim = &s;
  }
  if (!victim) throw Error(fmt::format("internal: no free ZeRO-3 gather slot for unit {}", w_.units()[unit].name));
  for (auto& h : victim->pending) h.wait();
  victim->pending.clear();
  victim->unit = static_cast<long>(unit);
  for (const Range& r : ranges_[unit]) {
    for (std::int64_t c0 = r.begin; c0 < r.end; c0 += kGatherChunk) {
      const std::int64_t c1 = std::min(r.end, c0 + kGatherChunk);
      const std::vector<std::int64_t> cnt = counts(c0, c1);
      const bool mine = cnt[static_cast<std::size_t>(rank_)] > 0;
      const float* in = mine ? w_.param_at(std::max(c0, w_.shard_begin())) : w_.params();
      victim->pending.push_back(comm_.all_gather_v_async(in, cnt, victim->data + r.pos + (c0 - r.begin)));
    }
  }
  return *victim;
}

void ZeroEngine::acquire(std::size_t unit, bool grads) {
  // MPI moves non-blocking collectives only inside MPI calls: poll between units of compute.
  scratch_handle_.test();
  if (stage_ >= 3) {
    if (training_ && !traced_) trace_.push_back(unit);
    on_trace_ = on_trace_ && trace_pos_ < trace_.size() && trace_[trace_pos_] == unit;
    std::vector<std::size_t> window{unit};
    if (on_trace_)
      for (std::size_t p = trace_pos_ + 1; p < trace_.size() && window.size() < slots_.size(); ++p)
        if (std::find(window.begin(), window.end(), trace_[p]) == window.end()) window.push_back(trace_[p]);
    auto holding = [&](std::size_t u) -> Slot* {
      for (Slot& s : slots_)
        if (s.unit == static_cast<long>(u)) return &s;
      return nullptr;
    };
    Slot* slot = holding(unit);
    if (!slot) slot = &gather_into_slot(unit, window);
    slot->pinned = true;
    slot->last_use = ++clock_;
    for (std::size_t k = 1; k < window.size(); ++k)  // prefetch what comes next
      if (!holding(window[k])) gather_into_slot(window[k], window);
    ++trace_pos_;
    for (auto& h : slot->pending) h.wait();
    slot->pending.clear();
    bind_unit(unit, slot->data, nullptr);
  }
  if (grads && stage_ >= 2) {
    const std::size_t b = next_bucket_;
    next_bucket_ = (next_bucket_ + 1) % buckets_.size();
    // The one reduction in flight may still read the other bucket; this one is free unless
    // the engine went round (it waits then).
    if (scratch_bucket_ == static_cast<long>(b)) scratch_handle_.wait();
    be_.zero(buckets_[b], w_.units()[unit].numel);
    bucket_of_unit_[unit] = static_cast<long>(b);
    float* wbase = stage_ >= 3 ? w_.bound(w_.units()[unit].first).w : nullptr;
    if (stage_ >= 3) {
      bind_unit(unit, wbase, buckets_[b]);
    } else {
      const ParamUnit& u = w_.units()[unit];
      const std::int64_t base = own_[unit].begin;
      for (std::size_t t = u.first; t < u.last; ++t) w_.bind(t, w_.bound(t).w, buckets_[b] + (w_.offset(t) - base));
      for (std::size_t k = 0; k < u.borrowed.size(); ++k)
        w_.bind(u.borrowed[k], w_.bound(u.borrowed[k]).w, buckets_[b] + ranges_[unit][k + 1].pos);
    }
  }
}

void ZeroEngine::release(std::size_t unit, bool grads) {
  if (grads && training_) {
    if (stage_ >= 2) {
      const long b = bucket_of_unit_[unit];
      for (const Range& r : ranges_[unit]) {
        reduce_range(r, buckets_[static_cast<std::size_t>(b)] + r.pos, true);
        scratch_bucket_ = b;
      }
      bucket_of_unit_[unit] = -1;
    } else if (last_ && world_ > 1) {
      const Range& r = own_[unit];
      reduce_range(r, w_.grads() + r.begin, false);
    }
  }
  if (stage_ >= 3) {
    for (Slot& s : slots_)
      if (s.unit == static_cast<long>(unit)) s.pinned = false;
    bind_unit(unit, nullptr, nullptr);
  } else if (grads && stage_ >= 2) {
    const ParamUnit& u = w_.units()[unit];
    for (std::size_t t = u.first; t < u.last; ++t) w_.bind(t, w_.bound(t).w, nullptr);
    for (std::size_t t : u.borrowed) w_.bind(t, w_.bound(t).w, nullptr);
  }
}

void ZeroEngine::finish_gradients() { scratch_handle_.wait(); }

std::int64_t ZeroEngine::update_begin() const { return stage_ == 0 ? 0 : w_.shard_begin(); }
std::int64_t ZeroEngine::update_end() const { return stage_ == 0 ? w_.numel() : w_.shard_end(); }
std::int64_t ZeroEngine::optimizer_elements() const { return stage_ == 0 ? w_.numel() : w_.shard_elements(); }

double ZeroEngine::grad_sum_squares() {
  finish_gradients();
  const std::int64_t n = w_.shard_end() - w_.shard_begin();
  double local = n > 0 ? be_.sum_squares(w_.grad_at(w_.shard_begin()), n) : 0.0;
  comm_.all_reduce_sum_f64(&local, 1);
  return local;
}

void ZeroEngine::after_update() {
  if (world_ > 1 && (stage_ == 1 || stage_ == 2)) {
    for (std::int64_t c0 = 0; c0 < w_.numel(); c0 += kGatherChunk) {
      const std::int64_t c1 = std::min(w_.numel(), c0 + kGatherChunk);
      const std::vector<std::int64_t> cnt = counts(c0, c1);
      const std::int64_t at = std::max(c0, w_.shard_begin());
      gathers_.push_back(comm_.all_gather_v_async(w_.params() + std::min(at, c1), cnt, w_.params() + c0));
    }
    for (auto& h : gathers_) h.wait();
    gathers_.clear();
  }
  for (Slot& s : slots_) {
    for (auto& h : s.pending) h.wait();
    s.pending.clear();
    s.unit = -1;
  }
}

void ZeroEngine::zero_grads() { be_.zero(w_.grads(), w_.grads_stored()); }

void ZeroEngine::gather_params(float* dst) {
  if (!w_.params_sharded()) {
    be_.copy_to_host(dst, w_.params(), static_cast<std::size_t>(w_.numel()) * sizeof(float));
    return;
  }
  std::vector<CommHandle> handles;
  for (std::int64_t c0 = 0; c0 < w_.numel(); c0 += kGatherChunk) {
    const std::int64_t c1 = std::min(w_.numel(), c0 + kGatherChunk);
    const std::vector<std::int64_t> cnt = counts(c0, c1);
    const bool mine = cnt[static_cast<std::size_t>(rank_)] > 0;
    handles.push_back(comm_.all_gather_v_async(mine ? w_.param_at(std::max(c0, w_.shard_begin())) : w_.params(), cnt, dst + c0));
  }
  for (auto& h : handles) h.wait();
}

}  // namespace llmlab
