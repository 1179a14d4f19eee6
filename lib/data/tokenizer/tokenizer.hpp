// Tokenizers: text <-> token ids. The byte-level tokenizer is the embedded default (no files);
// a Hugging Face tokenizer.json byte-level BPE (GPT-2/Llama 3/Qwen style) gives ids equal to the
// Hugging Face tokenizers library's encode(text, add_special_tokens=False).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmlab {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Appends the ids of `text` to `out`. Added/special tokens written literally in the text
  // (e.g. "<|im_start|>") are recognised, as Hugging Face does; no BOS/EOS is added.
  // Throws InputError on invalid UTF-8 (the message gives the byte offset). Safe to call from
  // many threads at once on one tokenizer (caches are per thread).
  virtual void encode(std::string_view text, std::vector<std::int32_t>& out) const = 0;
  // Bytes of the ids (special tokens as their text); invalid UTF-8 sequences come back as the
  // bytes they were. Throws InputError for an id outside the vocabulary.
  virtual std::string decode(std::span<const std::int32_t> ids) const = 0;
  // Number of ids (largest id + 1), special tokens included.
  virtual std::int64_t vocab_size() const = 0;
  // The id of a special or added token by its text ("<|eot_id|>"), if the vocabulary has it.
  virtual std::optional<std::int32_t> special_token(std::string_view text) const = 0;
  // A stable identity for manifests: "byte-level-v1" or "tokenizer.json xxh64:<hex>".
  virtual std::string identity() const = 0;

  std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<std::int32_t> out;
    encode(text, out);
    return out;
  }
};

// Bytes 0..255 are ids 0..255; special tokens follow (see byte_tokenizer.cpp for the list:
// <|bos|>, <|eos|>, <|pad|>, chatml and llama3 chat markers).
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// Loads a Hugging Face tokenizer.json (model.type BPE, byte-level). Throws InputError naming
// the file (and the JSON path of the offending field) when it is corrupt or unsupported.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path);

}  // namespace llmlab
