// load_hf_tokenizer: reads tokenizer.json (or .json.gz), checks that it is a byte-level BPE
// llmlab can reproduce exactly, and assembles the HfTokenizer. Anything else (WordPiece,
// Unigram, byte_fallback, other normalizers or pre-tokenizers) is refused with the file and
// the JSON path of the field, rather than silently encoding differently from Hugging Face.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <algorithm>

#include "core/error.hpp"
#include "data/tokenizer/byte_unicode.hpp"
#include "data/tokenizer/hf_tokenizer.hpp"
#include "data/tokenizer/read_file.hpp"

namespace llmlab {

namespace {

using nlohmann::json;
using tok::AddedToken;

// Field access that reports "file: json.path: problem".
class Fields {
 public:
  explicit Fields(std::string file) : file_(std::move(file)) {}
  const std::string& file() const { return file_; }

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw InputError(SourceLoc{file_}, key, problem);
  }
  // obj[name], or null when absent.
  const json& get(const json& obj, const char* name) const {
    static const json null_value;
    const auto it = obj.find(name);
    return it == obj.end() ? null_value : *it;
  }
  std::string string(const json& v, const std::string& key) const {
    if (!v.is_string()) fail(key, fmt::format("expected a string, got {}", v.type_name()));
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const char* name, const std::string& path, bool absent) const {
    const json& v = get(obj, name);
    if (v.is_null()) return absent;
    if (!v.is_boolean()) fail(path + "." + name, fmt::format("expected true or false, got {}", v.type_name()));
    return v.get<bool>();
  }
  // Ids stop at 2^24: far above any real vocabulary (Llama 3 has 128,256), and low enough
  // that a corrupt id cannot make the id -> token table huge.
  std::int32_t id(const json& v, const std::string& key) const {
    constexpr std::int64_t kLimit = 1 << 24;
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() >= kLimit)
      fail(key, fmt::format("expected a token id (an integer from 0 to {}), got {}", kLimit - 1, v.dump()));
    return static_cast<std::int32_t>(v.get<std::int64_t>());
  }
  std::string type(const json& obj, const std::string& path) const {
    if (!obj.is_object()) fail(path, fmt::format("expected an object, got {}", obj.type_name()));
    return string(get(obj, "type"), path + ".type");
  }

 private:
  std::string file_;
};

json parse(const Fields& f, const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.byte is 1-based; turn it into the line and column an editor jumps to.
    const std::size_t at = std::min<std::size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
    const std::size_t line_start = text.rfind('\n', at == 0 ? 0 : at - 1);
    const std::size_t column = line_start == std::string::npos || at == 0 ? at + 1 : at - line_start;
    std::string what = e.what();
    const std::size_t colon = what.find(": ");  // drop "[json.exception...] parse error at ..."
    if (colon != std::string::npos) what = what.substr(colon + 2);
    throw InputError(SourceLoc{f.file(), static_cast<int>(line), static_cast<int>(column)}, "",
                     "invalid JSON: " + what);
  }
}

bool parse_normalizer(const Fields& f, const json& n, const std::string& path) {
  if (n.is_null()) return false;
  const std::string type = f.type(n, path);
  if (type == "NFC") return true;
  if (type == "Sequence") {
    const json& list = f.get(n, "normalizers");
    if (!list.is_array()) f.fail(path + ".normalizers", "expected an array");
    bool nfc = false;
    for (std::size_t i = 0; i < list.size(); ++i)
      nfc = parse_normalizer(f, list[i], fmt::format("{}.normalizers[{}]", path, i)) || nfc;
    return nfc;
  }
  f.fail(path + ".type", fmt::format("unsupported normalizer '{}'; llmlab supports none or NFC", type));
}

tok::PreTokenizer parse_pretokenizer(const Fields& f, const json& pt) {
  const std::string unsupported = "; llmlab supports Split (Regex, Isolated) steps followed by ByteLevel";
  if (pt.is_null()) f.fail("pre_tokenizer", "missing: byte-level BPE needs a ByteLevel pre-tokenizer");
  std::vector<std::pair<const json*, std::string>> steps;
  if (f.type(pt, "pre_tokenizer") == "Sequence") {
    const json& list = f.get(pt, "pretokenizers");
    if (!list.is_array()) f.fail("pre_tokenizer.pretokenizers", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) steps.emplace_back(&list[i], fmt::format("pre_tokenizer.pretokenizers[{}]", i));
  } else {
    steps.emplace_back(&pt, "pre_tokenizer");
  }
  std::vector<tok::Regex> splits;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const json& step = *steps[i].first;
    const std::string& path = steps[i].second;
    const std::string type = f.type(step, path);
    if (type == "ByteLevel") {
      if (i + 1 != steps.size()) f.fail(path, "ByteLevel must be the last pre-tokenizer step" + unsupported);
      std::optional<tok::Regex> gpt2;
      if (f.boolean(step, "use_regex", path, true)) gpt2.emplace(tok::kGpt2Pattern, SourceLoc{f.file()}, path);
      return tok::PreTokenizer(std::move(splits), f.boolean(step, "add_prefix_space", path, true), std::move(gpt2));
    }
    if (type != "Split") f.fail(path + ".type", fmt::format("unsupported pre-tokenizer '{}'{}", type, unsupported));
    const json& pattern = f.get(step, "pattern");
    if (!pattern.is_object() || !pattern.contains("Regex"))
      f.fail(path + ".pattern", "unsupported pattern (only {\"Regex\": ...} is supported)");
    const std::string behavior = f.string(f.get(step, "behavior"), path + ".behavior");
    if (behavior != "Isolated") f.fail(path + ".behavior", fmt::format("unsupported behavior '{}' (only Isolated)", behavior));
    if (f.boolean(step, "invert", path, false)) f.fail(path + ".invert", "unsupported: invert true");
    splits.emplace_back(f.string(pattern["Regex"], path + ".pattern.Regex"), SourceLoc{f.file()}, path + ".pattern.Regex");
  }
  f.fail("pre_tokenizer", "no ByteLevel step: llmlab reads byte-level BPE only");
}

void check_model_options(const Fields& f, const json& model) {
  const std::string type = f.type(model, "model");
  if (type != "BPE") f.fail("model.type", fmt::format("unsupported model '{}'; llmlab reads byte-level BPE only", type));
  if (f.boolean(model, "byte_fallback", "model", false))
    f.fail("model.byte_fallback", "unsupported: byte_fallback BPE (SentencePiece style) is not byte-level BPE");
  const json& dropout = f.get(model, "dropout");
  if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
    f.fail("model.dropout", "unsupported: BPE dropout makes encoding random");
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json& v = f.get(model, affix);
    if (!v.is_null() && !(v.is_string() && v.get<std::string>().empty()))
      f.fail(std::string("model.") + affix, "unsupported: byte-level BPE has no subword prefix or suffix");
  }
}

std::pair<std::string, std::string> parse_merge(const Fields& f, const json& m, const std::string& key) {
  if (m.is_array() && m.size() == 2) return {f.string(m[0], key + "[0]"), f.string(m[1], key + "[1]")};
  const std::string line = f.string(m, key);
  const std::size_t space = line.find(' ');
  if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
    f.fail(key, fmt::format("merge '{}' is not two tokens separated by one space", line));
  return {line.substr(0, space), line.substr(space + 1)};
}

// The vocabulary three ways: by token string (merges and added tokens name tokens so), by
// the bytes a byte-level token stands for (what encoding looks up), and by id (decoding).
struct Vocabulary {
  tok::TokenIndex by_string, by_bytes;
  std::vector<std::optional<std::string>> id_bytes;
  std::array<std::int32_t, 256> byte_ids{};

  void set_bytes(std::int32_t id, std::string bytes) {
    if (static_cast<std::size_t>(id) >= id_bytes.size()) id_bytes.resize(static_cast<std::size_t>(id) + 1);
    id_bytes[static_cast<std::size_t>(id)] = std::move(bytes);
  }
};

Vocabulary parse_vocabulary(const Fields& f, const json& vocab) {
  if (!vocab.is_object()) f.fail("model.vocab", "expected an object of token -> id");
  Vocabulary v;
  for (const auto& [token, id_json] : vocab.items()) {
    const std::int32_t id = f.id(id_json, "model.vocab." + token);
    v.by_string.emplace(token, id);
    std::string bytes;
    // Entries with characters outside the byte table cannot come out of byte-level encoding.
    if (tok::token_to_bytes(token, bytes)) v.by_bytes.emplace(bytes, id);
    v.set_bytes(id, std::move(bytes));
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = v.by_bytes.find(std::string(1, static_cast<char>(b)));
    if (it == v.by_bytes.end())
      f.fail("model.vocab", fmt::format("no token for byte 0x{:02x} (U+{:04X}): not a byte-level BPE vocabulary", b,
                                        static_cast<std::uint32_t>(tok::byte_to_unicode(static_cast<std::uint8_t>(b)))));
    v.byte_ids[static_cast<std::size_t>(b)] = it->second;
  }
  return v;
}

std::vector<tok::BpeModel::Merge> parse_merges(const Fields& f, const json& merges, const Vocabulary& v) {
  if (!merges.is_array()) f.fail("model.merges", "expected an array");
  std::vector<tok::BpeModel::Merge> out;
  out.reserve(merges.size());
  auto id_of = [&](const std::string& token, const std::string& key) {
    const auto it = v.by_string.find(token);
    if (it == v.by_string.end()) f.fail(key, fmt::format("merge uses '{}', which is not in model.vocab", token));
    return it->second;
  };
  for (std::size_t i = 0; i < merges.size(); ++i) {
    // Hugging Face skips "#version" header lines of merges.txt; they take no rank.
    if (merges[i].is_string() && merges[i].get<std::string>().starts_with("#version")) continue;
    const std::string key = fmt::format("model.merges[{}]", i);
    const auto [left, right] = parse_merge(f, merges[i], key);
    out.push_back({id_of(left, key), id_of(right, key), id_of(left + right, key)});
  }
  return out;
}

// Added tokens with the ids Hugging Face's AddedVocabulary gives them (the file's "id" only
// draws a warning there): a token in the vocabulary keeps its id; a new one gets the number
// of vocabulary entries, or one past the largest added id so far. New tokens' bytes are
// their text; tokens in the vocabulary decode as the vocabulary says, as in Hugging Face.
std::vector<AddedToken> parse_added_tokens(const Fields& f, const json& list, std::size_t vocab_entries, Vocabulary& v) {
  if (list.is_null()) return {};
  if (!list.is_array()) f.fail("added_tokens", "expected an array");
  std::vector<AddedToken> added;
  std::int32_t largest = 0;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json& a = list[i];
    const std::string key = fmt::format("added_tokens[{}]", i);
    if (!a.is_object()) f.fail(key, "expected an object");
    AddedToken t;
    t.content = f.string(f.get(a, "content"), key + ".content");
    if (t.content.empty()) f.fail(key + ".content", "empty added token");
    for (const AddedToken& other : added)
      if (other.content == t.content) f.fail(key + ".content", fmt::format("'{}' is listed twice", t.content));
    f.id(f.get(a, "id"), key + ".id");
    const auto known = v.by_string.find(t.content);
    if (known != v.by_string.end()) {
      t.id = known->second;
    } else {
      const auto entries = static_cast<std::int32_t>(vocab_entries);
      t.id = added.empty() || largest < entries ? entries : largest + 1;
      v.set_bytes(t.id, t.content);
    }
    largest = added.empty() ? t.id : std::max(largest, t.id);
    t.single_word = f.boolean(a, "single_word", key, false);
    t.lstrip = f.boolean(a, "lstrip", key, false);
    t.rstrip = f.boolean(a, "rstrip", key, false);
    t.normalized = f.boolean(a, "normalized", key, true);
    t.special = f.boolean(a, "special", key, false);
    added.push_back(std::move(t));
  }
  return added;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  const Fields f(path);
  const std::string text = tok::read_maybe_gzipped(path);
  const json root = parse(f, text);
  if (!root.is_object()) f.fail("", "expected a JSON object (a Hugging Face tokenizer.json)");
  for (const char* unused : {"truncation", "padding"})
    if (!f.get(root, unused).is_null()) f.fail(unused, "unsupported: must be null (llmlab neither truncates nor pads)");
  // post_processor is not read: with add_special_tokens=False no Hugging Face post-processor
  // adds ids, and ByteLevel's only changes offsets.
  const json& decoder = f.get(root, "decoder");
  if (decoder.is_null() || f.type(decoder, "decoder") != "ByteLevel")
    f.fail("decoder", "unsupported: byte-level BPE needs the ByteLevel decoder");

  const json& model = f.get(root, "model");
  check_model_options(f, model);
  Vocabulary vocab = parse_vocabulary(f, f.get(model, "vocab"));
  const auto merges = parse_merges(f, f.get(model, "merges"), vocab);
  auto added = parse_added_tokens(f, f.get(root, "added_tokens"), f.get(model, "vocab").size(), vocab);
  const bool nfc = parse_normalizer(f, f.get(root, "normalizer"), "normalizer");
  auto pretokenizer = parse_pretokenizer(f, f.get(root, "pre_tokenizer"));
  const bool ignore_merges = f.boolean(model, "ignore_merges", "model", false);
  return std::make_unique<tok::HfTokenizer>(tok::HfTokenizerParts{
      fmt::format("tokenizer.json xxh64:{:016x}", XXH64(text.data(), text.size(), 0)),
      nfc,
      std::move(added),
      std::move(pretokenizer),
      tok::BpeModel(vocab.byte_ids, std::move(vocab.by_bytes), merges, ignore_merges),
      std::move(vocab.id_bytes),
  });
}

}  // namespace llmlab
