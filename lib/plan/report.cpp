// Table and JSON renderings of a Plan.
#include "plan/report.hpp"

#include <fmt/format.h>

#include "core/table.hpp"
#include "core/units.hpp"
#include "plan/fit.hpp"

namespace llmlab {

namespace {

std::string gib(std::int64_t bytes) { return format_gib(static_cast<double>(bytes)); }

std::string pct(std::int64_t part, std::int64_t whole) {
  return whole > 0 ? fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole)) : "-";
}

const char* slot_class_name(SlotClass c) {
  switch (c) {
    case SlotClass::input: return "input";
    case SlotClass::saved: return "saved";
    case SlotClass::core: return "core";
    case SlotClass::pointwise: return "pointwise";
  }
  return "?";
}

std::string model_line(const Plan& p) {
  const ModelSpec& m = p.model;
  std::string s = fmt::format("{} ({}): {} parameters ({})", m.name.empty() ? arch_name(m.arch) : m.name,
                              arch_name(m.arch), format_count(static_cast<std::uint64_t>(p.params.total)),
                              format_short_count(static_cast<double>(p.params.total)));
  if (p.params.activated != p.params.total)
    s += fmt::format(", {} activated per token", format_short_count(static_cast<double>(p.params.activated)));
  if (m.is_mla())
    s += fmt::format("\n  {} layers, hidden {}, {} heads (latent attention: kv rank {}, q/k dim {}, v dim {}), vocab {}",
                     m.num_layers, m.hidden_size, m.num_heads, m.mla.kv_lora_rank,
                     m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim, m.mla.v_head_dim, m.vocab_size);
  else
    s += fmt::format("\n  {} layers, hidden {}, {} heads ({} kv, head dim {}), vocab {}", m.num_layers, m.hidden_size,
                     m.num_heads, m.num_kv_heads, m.head_dim, m.vocab_size);
  if (m.is_moe())
    s += fmt::format(", {} experts top-{} (+{} shared)", m.moe.num_experts, m.moe.top_k, m.moe.num_shared_experts);
  if (m.mtp_depth) s += fmt::format(", {} MTP", m.mtp_depth);
  if (m.has_vision())
    s += fmt::format(", vision encoder {} params", format_short_count(static_cast<double>(p.params.vision)));
  return s;
}

std::string settings_line(const Plan& p) {
  const RunSettings& r = p.run;
  return fmt::format("micro-batch {} x {} tokens, {} accumulation, {} rank{}, ZeRO-{}, {}, {} attention, "
                     "checkpointing {}, {}",
                     r.train.micro_batch_size, r.data.packing_length, r.train.gradient_accumulation_steps,
                     r.dist.world_size, r.dist.world_size > 1 ? "s" : "", r.zero.stage, precision_name(r.train.precision),
                     attention_name(r.train.attention), describe_checkpointing(p), device_name(r.hardware.device));
}

void print_layers(const Plan& p, std::ostream& out) {
  Table t;
  t.column("layers", Table::Align::left).column("kind", Table::Align::left).column("mode", Table::Align::left)
      .column("kept MiB").column("recomputed MiB").column("recompute GFLOP");
  auto mib = [](std::int64_t b) { return fmt::format("{:.1f}", static_cast<double>(b) / static_cast<double>(MiB)); };
  std::size_t i = 0;
  while (i < p.layers.size()) {
    // Group consecutive layers that look the same (a recompute segment repeats as a pattern).
    std::size_t j = i + 1;
    auto same = [&](const LayerPlan& a, const LayerPlan& b) {
      return a.profile == b.profile && a.mode == b.mode && a.kept_bytes == b.kept_bytes;
    };
    while (j < p.layers.size() && same(p.layers[j], p.layers[i])) ++j;
    const LayerPlan& l = p.layers[i];
    const std::string range = j - i == 1 ? l.name : fmt::format("{}-{}", l.name, p.layers[j - 1].name.substr(
                                                                                   p.layers[j - 1].name.find('.') + 1));
    t.row({range, p.profiles[l.profile].kind, mode_name(l.mode), mib(l.kept_bytes), mib(l.rebuilt_bytes),
           fmt::format("{:.1f}", l.recompute_flops / 1e9)});
    i = j;
  }
  out << "\nlayers (per layer; what backward finds kept, and what it recomputes)\n";
  t.print(out, "  ");
}

void print_slots(const Plan& p, std::ostream& out) {
  for (std::size_t k = 0; k < p.profiles.size(); ++k) {
    const BlockProfile& prof = p.profiles[k];
    const LayerPlan* example = nullptr;
    for (const auto& l : p.layers)
      if (l.profile == k) {
        example = &l;
        break;
      }
    out << fmt::format("\nslots of a {} block ({} mode)\n", prof.kind, example ? mode_name(example->mode) : "-");
    Table t;
    t.column("slot", Table::Align::left).column("shape", Table::Align::left).column("MiB").column("class", Table::Align::left)
        .column("kept", Table::Align::left);
    for (const auto& s : prof.slots)
      t.row({s.name, s.shape, fmt::format("{:.2f}", static_cast<double>(s.bytes) / static_cast<double>(MiB)),
             slot_class_name(s.cls), example && keeps_slot(example->mode, s, true) ? "yes" : "recomputed"});
    t.print(out, "  ");
  }
}

}  // namespace

void print_plan(const Plan& p, std::ostream& out, const ReportOptions& options) {
  out << model_line(p) << "\n" << settings_line(p) << "\n\n";

  Table t;
  t.column("per-rank memory at the peak", Table::Align::left).column("GiB").column("share");
  std::int64_t states = 0;
  bool states_done = false;
  for (const auto& part : p.peak_parts) {
    const bool is_state = part.category == Category::params || part.category == Category::grads ||
                          part.category == Category::optimizer;
    if (!is_state && !states_done) {
      t.row({"= model states", gib(states), pct(states, p.peak_bytes)});
      t.rule();
      states_done = true;
    }
    if (is_state) states += part.bytes;
    t.row({part.name, gib(part.bytes), pct(part.bytes, p.peak_bytes)});
  }
  t.rule();
  t.row({"peak, at " + p.peak_phase, gib(p.peak_bytes), ""});
  t.print(out);
  const double free = static_cast<double>(p.memory_limit) - static_cast<double>(p.peak_bytes);
  out << fmt::format("{} of {} per rank: {}\n", format_bytes(static_cast<double>(p.peak_bytes)),
                     format_bytes(static_cast<double>(p.memory_limit)),
                     p.fits ? fmt::format("fits, {} free", format_bytes(free))
                            : fmt::format("DOES NOT FIT, {} over", format_bytes(-free)));

  print_layers(p, out);
  if (options.slots) print_slots(p, out);

  const Compute& c = p.compute;
  const auto& r = p.run;
  out << "\ncompute per rank\n";
  Table ct;
  ct.column("", Table::Align::left).column("per micro-step").column("per step");
  const double gas = static_cast<double>(r.train.gradient_accumulation_steps);
  ct.row({"forward", format_flops(c.forward_flops), format_flops(gas * c.forward_flops)});
  ct.row({"backward", format_flops(c.backward_flops), format_flops(gas * c.backward_flops)});
  ct.row({"recompute", format_flops(c.recompute_flops), format_flops(gas * c.recompute_flops)});
  ct.rule();
  ct.row({"total", format_flops(c.step_flops / gas), format_flops(c.step_flops)});
  ct.print(out, "  ");
  out << fmt::format(
      "est. step {}: compute {} at {:g} TFLOP/s x {:g} MFU, communication {} per rank ({}, {:.0f}% hidden); "
      "{} tokens/s over {} rank{}\n",
      format_seconds(c.step_seconds), format_seconds(c.compute_seconds), r.hardware.peak_tflops, r.hardware.mfu,
      format_bytes(c.comm_bytes), format_seconds(c.comm_seconds), 100 * r.hardware.comm_overlap,
      format_count(static_cast<std::uint64_t>(c.tokens_per_second)), r.dist.world_size, r.dist.world_size > 1 ? "s" : "");
}

nlohmann::ordered_json plan_json(const Plan& p) {
  using json = nlohmann::ordered_json;
  const ModelSpec& m = p.model;
  const RunSettings& r = p.run;
  json j;
  j["parameters"] = p.params.total;
  j["model"] = {{"name", m.name},
                {"arch", arch_name(m.arch)},
                {"parameters", p.params.total},
                {"activated_parameters", p.params.activated},
                {"embedding_parameters", p.params.embedding},
                {"vision_parameters", p.params.vision},
                {"mtp_parameters", p.params.mtp},
                {"layers", m.num_layers}};
  j["settings"] = {{"micro_batch_size", r.train.micro_batch_size},
                   {"gradient_accumulation_steps", r.train.gradient_accumulation_steps},
                   {"packing_length", r.data.packing_length},
                   {"world_size", r.dist.world_size},
                   {"zero_stage", r.zero.stage},
                   {"precision", precision_name(r.train.precision)},
                   {"attention", attention_name(r.train.attention)},
                   {"checkpointing", policy_name(r.checkpointing.policy)},
                   {"checkpointing_detail", describe_checkpointing(p)},
                   {"device", device_name(r.hardware.device)}};
  j["per_rank"] = {{"params_bytes", p.bytes(Category::params)},
                   {"grads_bytes", p.bytes(Category::grads)},
                   {"optimizer_bytes", p.bytes(Category::optimizer)},
                   {"model_states_bytes", p.model_states_bytes()},
                   {"activations_bytes", p.activations_bytes()},
                   {"loss_bytes", p.bytes(Category::loss)},
                   {"temporaries_bytes", p.bytes(Category::temporaries)},
                   {"comm_bytes", p.bytes(Category::comm)},
                   {"overhead_bytes", p.bytes(Category::overhead)},
                   {"reserve_bytes", p.bytes(Category::reserve)},
                   {"peak_bytes", p.peak_bytes},
                   {"peak_phase", p.peak_phase}};
  j["memory_limit_bytes"] = p.memory_limit;
  j["fits"] = p.fits;
  j["breakdown"] = json::array();
  for (const auto& part : p.peak_parts)
    j["breakdown"].push_back({{"name", part.name}, {"category", category_name(part.category)}, {"bytes", part.bytes}});
  j["buffers"] = json::array();
  for (const auto& b : p.buffers)
    j["buffers"].push_back({{"name", b.name},
                            {"category", category_name(b.category)},
                            {"lifetime", lifetime_name(b.lifetime)},
                            {"bytes", b.bytes}});
  j["layers"] = json::array();
  for (std::size_t i = 0; i < p.layers.size(); ++i) {
    const LayerPlan& l = p.layers[i];
    const BlockProfile& prof = p.profiles[l.profile];
    json kept = json::array(), recomputed = json::array();
    for (const auto& s : prof.slots) (keeps_slot(l.mode, s, l.segment == i) ? kept : recomputed).push_back(s.name);
    j["layers"].push_back({{"name", l.name},
                           {"kind", prof.kind},
                           {"mode", mode_name(l.mode)},
                           {"segment_start", p.layers[l.segment].name},
                           {"kept_bytes", l.kept_bytes},
                           {"recomputed_bytes", l.rebuilt_bytes},
                           {"forward_flops", prof.forward_flops},
                           {"recompute_flops", l.recompute_flops},
                           {"kept", kept},
                           {"recomputed", recomputed}});
  }
  const Compute& c = p.compute;
  j["compute"] = {{"forward_flops", c.forward_flops},     {"backward_flops", c.backward_flops},
                  {"recompute_flops", c.recompute_flops}, {"step_flops", c.step_flops},
                  {"compute_seconds", c.compute_seconds}, {"comm_bytes", c.comm_bytes},
                  {"comm_seconds", c.comm_seconds},       {"step_seconds", c.step_seconds},
                  {"tokens_per_step", c.tokens_per_step}, {"tokens_per_second", c.tokens_per_second}};
  return j;
}

}  // namespace llmlab
