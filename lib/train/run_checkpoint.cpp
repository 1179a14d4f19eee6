#include "train/run_checkpoint.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "model/checkpoint_store.hpp"
#include "model/safetensors.hpp"

namespace llmlab {

namespace {

namespace fs = std::filesystem;

// Host copies of device tensors: the CPU backend's memory is host memory already, but a
// device backend needs a staging copy; one flat copy keeps both paths the same.
std::vector<float> to_host(Backend& be, const float* src, std::int64_t n) {
  std::vector<float> host(static_cast<std::size_t>(n));
  be.copy_to_host(host.data(), src, host.size() * sizeof(float));
  return host;
}

void read_tensors(const SafetensorsFile& f, Weights& w, std::vector<float>& flat, const std::string& prefix) {
  for (std::size_t i = 0; i < w.table().size(); ++i) {
    const ParamTensor& t = w.table()[i];
    f.read_f32(prefix + t.name, t.shape, flat.data() + w.offset(i));
  }
}

// The part of the whole flat buffer this rank stores (all of it, or its ZeRO-3 shard).
void copy_stored_params(Backend& be, Weights& w, const std::vector<float>& flat) {
  const std::int64_t begin = w.params_sharded() ? w.shard_begin() : 0;
  const std::int64_t end = w.params_sharded() ? w.shard_end() : w.numel();
  be.copy_from_host(w.params(), flat.data() + begin, static_cast<std::size_t>(end - begin) * sizeof(float));
}

}  // namespace

nlohmann::ordered_json hf_config_json(const ModelSpec& m) {
  nlohmann::ordered_json j;
  if (m.arch == Arch::gpt2) {
    j["architectures"] = {"GPT2LMHeadModel"};
    j["model_type"] = "gpt2";
    j["vocab_size"] = m.vocab_size;
    j["n_positions"] = m.max_position_embeddings;
    j["n_embd"] = m.hidden_size;
    j["n_layer"] = m.num_layers;
    j["n_head"] = m.num_heads;
    j["n_inner"] = m.intermediate_size;
    j["activation_function"] = "gelu_new";
    j["layer_norm_epsilon"] = m.norm_eps;
    j["resid_pdrop"] = j["embd_pdrop"] = j["attn_pdrop"] = m.dropout;
  } else {
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
    j["vocab_size"] = m.vocab_size;
    j["hidden_size"] = m.hidden_size;
    j["intermediate_size"] = m.intermediate_size;
    j["num_hidden_layers"] = m.num_layers;
    j["num_attention_heads"] = m.num_heads;
    j["num_key_value_heads"] = m.num_kv_heads;
    j["head_dim"] = m.head_dim;
    j["max_position_embeddings"] = m.max_position_embeddings;
    j["rms_norm_eps"] = m.norm_eps;
    j["rope_theta"] = m.rope_theta;
    j["hidden_act"] = "silu";
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
  }
  j["tie_word_embeddings"] = m.tie_embeddings;
  j["torch_dtype"] = "float32";
  return j;
}

std::string optimizer_shard_name(int shard, int shards) {
  return fmt::format("optimizer-{:05d}-of-{:05d}.safetensors", shard, shards);
}

void save_checkpoint_files(const std::string& dir, const Weights& w, const float* params, const AdamW& opt,
                           Backend& be, const RunState& state, const ModelSpec& spec,
                           const nlohmann::ordered_json& model_config, const CheckpointPart& part) {
  const std::int64_t n = w.numel();
  if (part.optimizer) {
    const std::int64_t len = opt.end() - opt.begin();
    const auto m = to_host(be, opt.m(), len), v = to_host(be, opt.v(), len);
    write_safetensors((fs::path(dir) / optimizer_shard_name(part.shard, part.shards)).string(),
                      {{"exp_avg", "F32", {len}, m.data()}, {"exp_avg_sq", "F32", {len}, v.data()}},
                      {{"format", "llmlab-adamw-flat-1"},
                       {"begin", std::to_string(opt.begin())},
                       {"end", std::to_string(opt.end())},
                       {"numel", std::to_string(n)}});
  }
  if (!part.model) return;
  write_file_atomic((fs::path(dir) / "config.json").string(), hf_config_json(spec).dump(2) + "\n");
  std::vector<TensorToWrite> tensors;
  for (std::size_t i = 0; i < w.table().size(); ++i) {
    const ParamTensor& t = w.table()[i];
    tensors.push_back({t.name, "F32", t.shape, params + w.offset(i)});
  }
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors,
                    {{"format", "pt"}, {"llmlab.config", model_config.dump()}});
  nlohmann::ordered_json j;
  j["format"] = "llmlab-checkpoint-1";
  j["step"] = state.step;
  j["data_cursor"] = {{"epoch", state.cursor.epoch}, {"position", state.cursor.position}};
  j["tokens_seen"] = state.tokens_seen;
  j["recipe_hash"] = state.recipe_hash;
  j["world_size"] = part.world_size;
  j["zero_stage"] = part.zero_stage;
  j["optimizer_shards"] = part.shards;
  j["model"] = model_config;
  write_file_atomic((fs::path(dir) / "state.json").string(), j.dump(2) + "\n");
}

namespace {

// Copies the flat range [begin, end) of the moments from the optimizer shards in `dir`.
void read_optimizer_range(const std::string& dir, std::int64_t numel, std::int64_t begin, std::int64_t end, float* m,
                          float* v) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("optimizer-", 0) == 0 && name.size() > 12 && name.ends_with(".safetensors")) files.push_back(e.path().string());
  }
  if (files.empty())
    throw InputError(SourceLoc{dir, 0, 0}, "", "no optimizer-*-of-*.safetensors files: not a checkpoint of this version");
  std::int64_t covered = 0;
  for (const auto& path : files) {
    const SafetensorsFile f(path);
    auto meta = [&](const char* key) -> std::int64_t {
      auto it = f.metadata().find(key);
      if (it == f.metadata().end()) throw InputError(SourceLoc{path, 0, 0}, key, "missing from the file's metadata");
      try {
        return std::stoll(it->second);
      } catch (const std::exception&) {
        throw InputError(SourceLoc{path, 0, 0}, key, fmt::format("'{}' is not an integer", it->second));
      }
    };
    const std::int64_t fb = meta("begin"), fe = meta("end"), fn = meta("numel");
    if (fn != numel)
      throw InputError(SourceLoc{path, 0, 0}, "numel",
                       fmt::format("holds moments of {} parameters but the model has {}", fn, numel));
    if (fb < 0 || fe < fb || fe > numel) throw InputError(SourceLoc{path, 0, 0}, "begin", "range outside the model");
    const std::int64_t lo = std::max(begin, fb), hi = std::min(end, fe);
    if (lo >= hi) continue;
    std::vector<float> buf(static_cast<std::size_t>(fe - fb));
    f.read_f32("exp_avg", buf.data(), fe - fb);
    std::copy(buf.begin() + (lo - fb), buf.begin() + (hi - fb), m + (lo - begin));
    f.read_f32("exp_avg_sq", buf.data(), fe - fb);
    std::copy(buf.begin() + (lo - fb), buf.begin() + (hi - fb), v + (lo - begin));
    covered += hi - lo;
  }
  // Shards of one checkpoint do not overlap, so complete coverage is a count.
  if (covered != end - begin)
    throw InputError(SourceLoc{dir, 0, 0}, "",
                     fmt::format("the optimizer shards cover {} of the {} moments this rank needs: a shard file is "
                                 "missing or from another checkpoint",
                                 covered, end - begin));
}

}  // namespace

RunState load_checkpoint_files(const std::string& dir, Weights& w, AdamW& opt, Backend& be) {
  const std::string state_path = (fs::path(dir) / "state.json").string();
  std::ifstream in(state_path);
  if (!in) throw InputError(SourceLoc{state_path, 0, 0}, "", "cannot read the checkpoint state");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(SourceLoc{state_path, 0, 0}, "", fmt::format("not valid JSON ({})", e.what()));
  }
  RunState s;
  try {
    if (j.at("format") != "llmlab-checkpoint-1") throw InputError(SourceLoc{state_path, 0, 0}, "format", "not an llmlab checkpoint");
    s.step = j.at("step").get<std::int64_t>();
    s.cursor.epoch = j.at("data_cursor").at("epoch").get<std::uint64_t>();
    s.cursor.position = j.at("data_cursor").at("position").get<std::uint64_t>();
    s.tokens_seen = j.at("tokens_seen").get<std::uint64_t>();
    s.recipe_hash = j.at("recipe_hash").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(SourceLoc{state_path, 0, 0}, "", fmt::format("missing or malformed field ({})", e.what()));
  }
  const std::int64_t n = w.numel();
  std::vector<float> flat(static_cast<std::size_t>(n));
  read_tensors(SafetensorsFile((fs::path(dir) / "model.safetensors").string()), w, flat, "");
  copy_stored_params(be, w, flat);
  const std::int64_t len = opt.end() - opt.begin();
  std::vector<float> m(static_cast<std::size_t>(len)), v(static_cast<std::size_t>(len));
  read_optimizer_range(dir, n, opt.begin(), opt.end(), m.data(), v.data());
  be.copy_from_host(opt.m(), m.data(), m.size() * sizeof(float));
  be.copy_from_host(opt.v(), v.data(), v.size() * sizeof(float));
  return s;
}

std::vector<std::string> load_weights(const std::string& path, Weights& w, Backend& be) {
  std::string file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) file = (fs::path(resolve_checkpoint(path)) / "model.safetensors").string();
  const SafetensorsFile f(file);
  std::vector<float> flat(static_cast<std::size_t>(w.numel()));
  std::set<std::string> known;
  for (std::size_t i = 0; i < w.table().size(); ++i) {
    const ParamTensor& t = w.table()[i];
    // Checkpoints saved from the base model (GPT2Model, as openai-community/gpt2 is) lack the
    // "transformer." / "model." prefix of the *ForCausalLM names.
    std::string name = t.name;
    if (!f.find(name) && name.find('.') != std::string::npos && f.find(name.substr(name.find('.') + 1)))
      name = name.substr(name.find('.') + 1);
    if (!f.find(name))
      throw InputError(SourceLoc{file, 0, 0}, t.name,
                       "missing: the file does not hold this parameter of the model (is it the same architecture?)");
    known.insert(name);
    f.read_f32(name, t.shape, flat.data() + w.offset(i));
  }
  copy_stored_params(be, w, flat);
  std::vector<std::string> extra;
  for (const auto& name : f.names())
    if (!known.count(name)) extra.push_back(name);
  return extra;
}

}  // namespace llmlab
