// Names of the settings enums, as they are written in recipes.
#include "spec/settings.hpp"

namespace llmlab {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::bf16_mixed: return "bf16-mixed";
    case Precision::fp16_mixed: return "fp16-mixed";
    case Precision::fp32: return "fp32";
  }
  return "?";
}

const char* policy_name(CheckpointPolicy p) {
  switch (p) {
    case CheckpointPolicy::none: return "none";
    case CheckpointPolicy::full: return "full";
    case CheckpointPolicy::selective: return "selective";
    case CheckpointPolicy::every_k: return "every_k";
    case CheckpointPolicy::sqrt: return "sqrt";
    case CheckpointPolicy::budget: return "budget";
  }
  return "?";
}

const char* attention_name(AttentionImpl a) { return a == AttentionImpl::flash ? "flash" : "naive"; }
const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }
const char* selective_name(SelectiveScope s) { return s == SelectiveScope::core ? "core" : "pointwise"; }
const char* grad_dtype_name(GradDtype g) { return g == GradDtype::bf16 ? "bf16" : "fp32"; }

const char* schedule_name(LrSchedule s) {
  switch (s) {
    case LrSchedule::cosine: return "cosine";
    case LrSchedule::linear: return "linear";
    case LrSchedule::constant: return "constant";
  }
  return "?";
}

const char* overflow_name(OverflowPolicy o) {
  switch (o) {
    case OverflowPolicy::split: return "split";
    case OverflowPolicy::truncate: return "truncate";
    case OverflowPolicy::drop: return "drop";
  }
  return "?";
}

}  // namespace llmlab
