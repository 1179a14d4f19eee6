#include "model/model.hpp"

#include <fmt/format.h>

#include <utility>

#include "core/error.hpp"
#include "model/embedding_head.hpp"

namespace llmlab {

struct Model::Inputs {
  Tracked<std::int32_t> ids, targets, positions, cu_seqlens;
  Tracked<std::uint8_t> mask;
};

namespace {

int find_slot(const BlockProfile& p, const std::string& name) {
  for (std::size_t i = 0; i < p.slots.size(); ++i)
    if (p.slots[i].name == name) return static_cast<int>(i);
  throw Error(fmt::format("internal: the plan's output head has no slot '{}'", name));
}

Category slot_category(const Slot& s) { return s.loss ? Category::loss : Category::activations; }

bool ends_segment(const Plan& plan, std::size_t i) {
  return i + 1 == plan.layers.size() || plan.layers[i + 1].segment != plan.layers[i].segment;
}

}  // namespace

Model::Model(const Plan& plan, Backend& backend, TrackedMemory& mem, WeightsLayout layout)
    : plan_(plan), be_(backend), mem_(mem), weights_(plan.model, mem, layout) {
  const ModelSpec& m = plan_.model;
  for (const auto& profile : plan_.profiles) slot_maps_.push_back(BlockSlots::of(profile, m, plan_.run.train.attention));
  for (std::size_t i = 0; i < plan_.layers.size(); ++i) {
    unit_of_layer_.push_back(weights_.unit_index(plan_.layers[i].name));
    slots_.emplace_back(plan_.profiles[plan_.layers[i].profile].slots.size(), nullptr);
  }
  embedding_unit_ = weights_.unit_index("embedding");
  head_unit_ = weights_.unit_index("head");
  const bool gpt2 = m.arch == Arch::gpt2;
  head_.assign(plan_.head.slots.size(), nullptr);
  head_input_ = find_slot(plan_.head, "input");
  head_stats_ = find_slot(plan_.head, gpt2 ? "ln_f.mean_rstd" : "norm.rstd");
  head_out_ = find_slot(plan_.head, gpt2 ? "ln_f.out" : "norm.out");
  head_logits_ = find_slot(plan_.head, "logits");
  head_lse_ = find_slot(plan_.head, "loss.lse");
  head_losses_ = find_slot(plan_.head, "loss.per_token");
}

BlockContext Model::context(const BatchView& view, std::size_t layer) const {
  return BlockContext{be_, plan_.model, plan_.run, slot_maps_[plan_.layers[layer].profile], view};
}

void Model::allocate_slots(std::size_t layer) {
  const BlockProfile& p = plan_.profiles[plan_.layers[layer].profile];
  for (std::size_t s = 0; s < p.slots.size(); ++s)
    if (!slots_[layer][s]) slots_[layer][s] = static_cast<float*>(mem_.allocate(p.slots[s].bytes, slot_category(p.slots[s])));
}

void Model::free_slots(std::size_t layer, bool only_dropped) {
  const LayerPlan& l = plan_.layers[layer];
  const BlockProfile& p = plan_.profiles[l.profile];
  for (std::size_t s = 0; s < p.slots.size(); ++s) {
    if (!slots_[layer][s]) continue;
    if (only_dropped && keeps_slot(l.mode, p.slots[s], l.segment == layer)) continue;
    mem_.release(slots_[layer][s]);
    slots_[layer][s] = nullptr;
  }
}

void Model::upload(const Batch& b, Inputs& in, BatchView& v) {
  const RunSettings& r = plan_.run;
  v.rows = r.train.micro_batch_size;
  v.seq_len = r.data.packing_length;
  v.capacity = v.rows * v.seq_len;
  v.tokens = static_cast<std::int64_t>(b.tokens.size());
  v.docs = static_cast<std::int64_t>(b.cu_seqlens.size()) - 1;
  v.max_seqlen = b.max_seqlen;
  if (b.rows != v.rows || v.tokens > v.capacity || v.tokens == 0)
    throw Error(fmt::format("internal: a batch of {} rows and {} tokens does not fit the plan's {} x {}", b.rows,
                            v.tokens, v.rows, v.seq_len));
  // A learned position table is indexed by position: never read or write past its rows.
  const ModelSpec& m = plan_.model;
  if (m.arch == Arch::gpt2)
    for (const std::int32_t p : b.position_ids)
      if (p < 0 || p >= m.max_position_embeddings)
        throw Error(fmt::format("a batch holds position {} but the learned position table has {} rows (re-pack long "
                                "documents with data.overflow=truncate)",
                                p, m.max_position_embeddings));
  // Sized as the plan's input buffers: capacity tokens, capacity + 1 document boundaries.
  in.ids = Tracked<std::int32_t>(mem_, v.capacity, Category::activations);
  in.targets = Tracked<std::int32_t>(mem_, v.capacity, Category::activations);
  in.positions = Tracked<std::int32_t>(mem_, v.capacity, Category::activations);
  in.mask = Tracked<std::uint8_t>(mem_, v.capacity, Category::activations);
  in.cu_seqlens = Tracked<std::int32_t>(mem_, v.capacity + 1, Category::activations);
  const auto n = static_cast<std::size_t>(v.tokens);
  be_.copy_from_host(in.ids.get(), b.tokens.data(), n * 4);
  be_.copy_from_host(in.targets.get(), b.targets.data(), n * 4);
  be_.copy_from_host(in.positions.get(), b.position_ids.data(), n * 4);
  be_.copy_from_host(in.mask.get(), b.loss_mask.data(), n);
  be_.copy_from_host(in.cu_seqlens.get(), b.cu_seqlens.data(), b.cu_seqlens.size() * 4);
  v.ids = in.ids.get();
  v.targets = in.targets.get();
  v.positions = in.positions.get();
  v.loss_mask = in.mask.get();
  v.cu_seqlens = in.cu_seqlens.get();
  v.cu_seqlens_host = b.cu_seqlens.data();
}

// log p(target) = -(token loss), read back from the head's per-token losses.
void Model::token_losses(const BatchView& v, std::vector<float>& logp) {
  logp.resize(static_cast<std::size_t>(v.tokens));
  be_.copy_to_host(logp.data(), head_[static_cast<std::size_t>(head_losses_)], logp.size() * sizeof(float));
  for (float& x : logp) x = -x;
}

double Model::forward(const BatchView& v, bool keep_for_backward, float grad_scale, const TokenGradient* token_gradient,
                      std::vector<float>* logp) {
  const ModelSpec& m = plan_.model;
  const std::int64_t T = v.tokens, C = m.hidden_size, V = m.vocab_size;
  const std::size_t L = plan_.layers.size();
  auto input_of = [&](std::size_t layer) -> float*& {
    return layer < L ? slots_[layer][static_cast<std::size_t>(slot_maps_[plan_.layers[layer].profile].input)]
                     : head_[static_cast<std::size_t>(head_input_)];
  };
  auto bytes_of_input = [&](std::size_t layer) {
    return layer < L ? plan_.profiles[plan_.layers[layer].profile]
                           .slots[static_cast<std::size_t>(slot_maps_[plan_.layers[layer].profile].input)]
                           .bytes
                     : plan_.head.slots[static_cast<std::size_t>(head_input_)].bytes;
  };
  input_of(0) = static_cast<float*>(mem_.allocate(bytes_of_input(0), Category::activations));
  acquire(embedding_unit_, false);
  const EmbeddingParams ep = embedding_params(weights_, m);
  be_.embedding_forward(v.ids, v.positions, ep.wte.w, ep.wpe.w, input_of(0), T, C);
  release(embedding_unit_, false);
  for (std::size_t i = 0; i < L; ++i) {
    allocate_slots(i);
    float*& out = input_of(i + 1);
    out = static_cast<float*>(mem_.allocate(bytes_of_input(i + 1), Category::activations));
    acquire(unit_of_layer_[i], false);
    block_forward(context(v, i), block_params(weights_, m, static_cast<std::int64_t>(i)), slots_[i], out);
    release(unit_of_layer_[i], false);
    free_slots(i, keep_for_backward);
  }

  for (std::size_t s = 0; s < head_.size(); ++s)
    if (!head_[s]) head_[s] = static_cast<float*>(mem_.allocate(plan_.head.slots[s].bytes, slot_category(plan_.head.slots[s])));
  auto h = [&](int index) { return head_[static_cast<std::size_t>(index)]; };
  acquire(head_unit_, false);
  const HeadParams hp = head_params(weights_, m);
  if (m.arch == Arch::gpt2) be_.layernorm_forward(h(head_input_), hp.norm_w.w, hp.norm_b.w, h(head_out_), h(head_stats_), T, C, static_cast<float>(m.norm_eps));
  else be_.rmsnorm_forward(h(head_input_), hp.norm_w.w, h(head_out_), h(head_stats_), T, C, static_cast<float>(m.norm_eps));
  be_.gemm(false, true, T, V, C, 1.0f, h(head_out_), C, hp.lm_head.w, C, 0.0f, h(head_logits_), V);
  // Fused cross-entropy: the logits are overwritten by their gradient, never copied.
  const double loss = be_.cross_entropy(h(head_logits_), v.targets, v.loss_mask, h(head_losses_), h(head_lse_), T, V,
                                        keep_for_backward && !token_gradient ? grad_scale : 0.0f);
  if (logp) token_losses(v, *logp);
  if (keep_for_backward && token_gradient) {
    // The logits are still intact (grad_scale 0 above): turn the caller's d loss / d log p
    // into the weights of the separate cross-entropy backward (loss = -log p).
    std::vector<float> lp, dlogp(static_cast<std::size_t>(T), 0.0f);
    token_losses(v, lp);
    (*token_gradient)(lp, dlogp);
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(T));
    std::vector<std::int32_t> targets(static_cast<std::size_t>(T));
    be_.copy_to_host(mask.data(), v.loss_mask, mask.size());
    be_.copy_to_host(targets.data(), v.targets, targets.size() * sizeof(std::int32_t));
    for (std::size_t t = 0; t < dlogp.size(); ++t) dlogp[t] = mask[t] && targets[t] >= 0 ? -dlogp[t] : 0.0f;
    be_.cross_entropy_backward(h(head_logits_), v.targets, dlogp.data(), T, V);
  }
  release(head_unit_, false);
  if (!keep_for_backward) {
    for (auto& p : head_)
      if (p) mem_.release(p), p = nullptr;
  }
  return loss;
}

void Model::backward(const BatchView& v) {
  const ModelSpec& m = plan_.model;
  const std::int64_t T = v.tokens, C = m.hidden_size, V = m.vocab_size;
  // Residual-stream gradients: d(output) of the layer in backward and d(input) it produces.
  Tracked<float> da(mem_, v.capacity * C, Category::temporaries), db(mem_, v.capacity * C, Category::temporaries);
  {
    auto h = [&](int index) { return head_[static_cast<std::size_t>(index)]; };
    Tracked<float> dnorm(mem_, v.capacity * C, Category::temporaries);
    acquire(head_unit_, true);
    const HeadParams hp = head_params(weights_, m);
    be_.gemm(false, false, T, C, V, 1.0f, h(head_logits_), V, hp.lm_head.w, C, 0.0f, dnorm.get(), C);
    be_.gemm(true, false, V, C, T, 1.0f, h(head_logits_), V, h(head_out_), C, 1.0f, hp.lm_head.g, C);
    be_.zero(da.get(), T * C);
    if (m.arch == Arch::gpt2)
      be_.layernorm_backward(dnorm.get(), h(head_input_), hp.norm_w.w, h(head_stats_), da.get(), hp.norm_w.g, hp.norm_b.g, T, C);
    else
      be_.rmsnorm_backward(dnorm.get(), h(head_input_), hp.norm_w.w, h(head_stats_), da.get(), hp.norm_w.g, T, C);
    release(head_unit_, true);
  }
  for (auto& p : head_)
    if (p) mem_.release(p), p = nullptr;

  float* dout = da.get();
  float* dinp = db.get();
  for (std::size_t i = plan_.layers.size(); i-- > 0;) {
    const LayerPlan& l = plan_.layers[i];
    const auto layer = static_cast<std::int64_t>(i);
    if (l.mode == LayerMode::recompute) {
      if (ends_segment(plan_, i)) {
        // Run the whole segment's forward again from its kept input.
        for (std::size_t j = l.segment; j <= i; ++j) {
          if (j < i) acquire(unit_of_layer_[j], false);
          else acquire(unit_of_layer_[i], true);
          allocate_slots(j);
          float* out = nullptr;
          if (j < i) {
            const BlockProfile& next = plan_.profiles[plan_.layers[j + 1].profile];
            const auto in = static_cast<std::size_t>(slot_maps_[plan_.layers[j + 1].profile].input);
            slots_[j + 1][in] = static_cast<float*>(mem_.allocate(next.slots[in].bytes, Category::activations));
            out = slots_[j + 1][in];
          }
          block_forward(context(v, j), block_params(weights_, m, static_cast<std::int64_t>(j)), slots_[j], out);
          if (j < i) release(unit_of_layer_[j], false);
        }
      } else {
        acquire(unit_of_layer_[i], true);
      }
    } else {
      acquire(unit_of_layer_[i], true);
      if (l.mode != LayerMode::keep) {
        allocate_slots(i);
        block_rebuild(context(v, i), block_params(weights_, m, layer), slots_[i], l.mode);
      }
    }
    block_backward(context(v, i), block_params(weights_, m, layer), slots_[i], dout, dinp, mem_);
    release(unit_of_layer_[i], true);
    free_slots(i, false);
    std::swap(dout, dinp);
  }
  acquire(embedding_unit_, true);
  const EmbeddingParams ep = embedding_params(weights_, m);
  be_.embedding_backward(dout, v.ids, v.positions, ep.wte.g, ep.wpe.g, T, C);
  release(embedding_unit_, true);
}

double Model::forward_backward(const Batch& batch, float grad_scale, bool last) {
  Inputs in;
  BatchView view;
  upload(batch, in, view);
  if (access_) access_->begin_micro_batch(true, last);
  const double loss = forward(view, true, grad_scale);
  backward(view);
  return loss;
}

double Model::forward_backward(const Batch& batch, const TokenGradient& fn, bool last) {
  Inputs in;
  BatchView view;
  upload(batch, in, view);
  if (access_) access_->begin_micro_batch(true, last);
  const double loss = forward(view, true, 0.0f, &fn);
  backward(view);
  return loss;
}

std::vector<float> Model::token_logprobs(const Batch& batch) {
  Inputs in;
  BatchView view;
  upload(batch, in, view);
  if (access_) access_->begin_micro_batch(false, false);
  std::vector<float> logp;
  forward(view, false, 0.0f, nullptr, &logp);
  return logp;
}

double Model::forward_loss(const Batch& batch) {
  Inputs in;
  BatchView view;
  upload(batch, in, view);
  if (access_) access_->begin_micro_batch(false, false);
  return forward(view, false, 0.0f);
}

}  // namespace llmlab
