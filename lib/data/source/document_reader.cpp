// Dataset files -> RawDocuments. Every file is opened through zlib, which reads gzip and plain
// files alike, and consumed in chunks: memory is bounded by the longest record, not the file.
#include "data/source/document_reader.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simdjson.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace llmlab {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_jsonl(const std::string& path, InputFormat format) {
  if (format != InputFormat::auto_detect) return format == InputFormat::jsonl;
  std::string p = path;
  if (ends_with(p, ".gz")) p.resize(p.size() - 3);
  return ends_with(p, ".jsonl") || ends_with(p, ".json") || ends_with(p, ".ndjson");
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
std::size_t utf8_sequence(const std::string& s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1Fu;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0Fu;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07u;
  else return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3Fu);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

// JSONL records are parsed with simdjson (the pre-tokenized path is JSON-bound: nlohmann
// parsed ~16 MB/s of input_ids here); on a syntax error nlohmann re-parses the line only to
// say exactly where and why.
[[noreturn]] void malformed(const std::string& line, const SourceLoc& where, simdjson::error_code code) {
  try {
    const auto parsed = nlohmann::json::parse(line);
    (void)parsed;
  } catch (const nlohmann::json::parse_error& e) {
    SourceLoc at = where;
    at.column = static_cast<int>(e.byte);
    std::string why = e.what();
    if (const auto colon = why.rfind(": "); colon != std::string::npos) why = why.substr(colon + 2);
    throw InputError(at, "", "malformed JSON: " + why);
  }
  // nlohmann accepted what simdjson did not (e.g. nesting deeper than simdjson's limit).
  throw InputError(where, "", fmt::format("malformed JSON (simdjson error {})", static_cast<int>(code)));
}

std::string string_of(simdjson::dom::element e, const SourceLoc& where, const char* key) {
  std::string_view v;
  if (e.get_string().get(v)) throw InputError(where, key, "expected a string");
  return std::string(v);
}

// Text of a chat message's content: a string, or OpenAI-style parts [{type: text, text}].
std::string content_text(simdjson::dom::element content, const SourceLoc& where) {
  std::string_view text;
  if (!content.get_string().get(text)) return std::string(text);
  simdjson::dom::array parts;
  if (content.get_array().get(parts))
    throw InputError(where, "messages", "content must be a string or a list of text parts");
  std::string out;
  for (simdjson::dom::element part : parts) {
    std::string_view type, piece;
    if (part["type"].get_string().get(type) || type != "text" || part["text"].get_string().get(piece))
      throw InputError(where, "messages", "content parts must be {\"type\": \"text\", \"text\": \"...\"}");
    out += piece;
  }
  return out;
}

std::vector<std::int64_t> int_array(simdjson::dom::element e, const SourceLoc& where, const char* key) {
  simdjson::dom::array array;
  if (e.get_array().get(array)) throw InputError(where, key, "expected a list of integers");
  std::vector<std::int64_t> out;
  out.reserve(array.size());
  for (simdjson::dom::element v : array) {
    std::int64_t x = 0;
    if (v.get_int64().get(x)) throw InputError(where, key, "expected a list of integers, found " + simdjson::to_string(v));
    out.push_back(x);
  }
  return out;
}

void parse_record(simdjson::dom::parser& parser, const std::string& line, const SourceLoc& where, const DataSettings& s,
                  RawDocument& doc) {
  simdjson::dom::element root;
  if (const auto err = parser.parse(line).get(root)) malformed(line, where, err);
  simdjson::dom::object j;
  if (root.get_object().get(j)) throw InputError(where, "", "a JSONL record must be a JSON object");
  doc.where = where;
  doc.messages.clear();
  doc.ids.clear();
  doc.mask.clear();
  simdjson::dom::element v;
  if (!j["input_ids"].get(v)) {
    doc.kind = DocKind::token_ids;
    doc.ids = int_array(v, where, "input_ids");
    if (!j["labels"].get(v)) {
      const auto labels = int_array(v, where, "labels");
      if (labels.size() != doc.ids.size())
        throw InputError(where, "labels", fmt::format("has {} entries for {} input_ids", labels.size(), doc.ids.size()));
      for (auto l : labels) doc.mask.push_back(l == -100 ? 0 : 1);  // -100: Hugging Face's ignore index
    } else if (!j["loss_mask"].get(v)) {
      const auto mask = int_array(v, where, "loss_mask");
      if (mask.size() != doc.ids.size())
        throw InputError(where, "loss_mask", fmt::format("has {} entries for {} input_ids", mask.size(), doc.ids.size()));
      for (auto m : mask) {
        if (m != 0 && m != 1) throw InputError(where, "loss_mask", "entries must be 0 or 1");
        doc.mask.push_back(static_cast<std::uint8_t>(m));
      }
    }
    return;
  }
  if (!j["messages"].get(v)) {
    doc.kind = DocKind::chat;
    simdjson::dom::array messages;
    if (v.get_array().get(messages)) throw InputError(where, "messages", "expected a list of {role, content}");
    for (simdjson::dom::element m : messages) {
      simdjson::dom::element role, content;
      if (m["role"].get(role) || !role.is_string() || m["content"].get(content))
        throw InputError(where, "messages", "each message needs a string role and a content");
      doc.messages.push_back({string_of(role, where, "messages"), content_text(content, where)});
    }
    return;
  }
  simdjson::dom::element prompt, completion;
  const bool has_prompt = !j["prompt"].get(prompt), has_completion = !j["completion"].get(completion);
  if (has_prompt || has_completion) {
    if (!has_prompt || !has_completion || !prompt.is_string() || !completion.is_string())
      throw InputError(where, has_prompt ? "completion" : "prompt", "missing: prompt/completion records need both as strings");
    doc.kind = DocKind::prompt_completion;
    doc.prompt = string_of(prompt, where, "prompt");
    doc.completion = string_of(completion, where, "completion");
    return;
  }
  if (!j[s.text_field].get(v)) {
    doc.kind = DocKind::text;
    doc.text = string_of(v, where, s.text_field.c_str());
    return;
  }
  throw InputError(where, "",
                   fmt::format("no '{}', 'messages', 'prompt'/'completion' or 'input_ids' field", s.text_field));
}

}  // namespace

void check_utf8(const std::string& text, const SourceLoc& where) {
  int line = where.line;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_sequence(text, i);
    if (n == 0) {
      SourceLoc at = where;
      at.line = line;
      at.column = 0;
      throw InputError(at, "", fmt::format("invalid UTF-8 (byte 0x{:02x})", static_cast<unsigned char>(text[i])));
    }
    if (text[i] == '\n') ++line;
    i += n;
  }
}

struct DocumentReader::State {
  std::vector<std::string> files;
  DataSettings settings;
  std::size_t file = 0;
  gzFile gz = nullptr;
  bool jsonl = false;
  bool eof = false;
  std::string buffer;      // read from the file; bytes before `pos` are consumed
  std::size_t pos = 0;
  int line = 1;            // line of buffer's first byte
  std::uint64_t done_bytes = 0;  // compressed bytes of files already finished
  std::uint64_t total = 0;
  simdjson::dom::parser parser;  // reused: its buffers grow to the longest record

  ~State() {
    if (gz) gzclose(gz);
  }

  void open_next() {
    if (gz) {
      gzclose(gz);
      gz = nullptr;
    }
    const std::string& path = files[file];
    gz = gzopen(path.c_str(), "rb");
    if (!gz) throw InputError(SourceLoc{path, 0, 0}, "data.inputs", std::string("cannot open: ") + std::strerror(errno));
    gzbuffer(gz, 1 << 20);
    jsonl = is_jsonl(path, settings.format);
    eof = false;
    buffer.clear();
    pos = 0;
    line = 1;
  }

  // Reads more of the current file; false at its end.
  bool fill() {
    if (eof) return false;
    char chunk[1 << 16];
    const int n = gzread(gz, chunk, sizeof chunk);
    if (n < 0) {
      int code = 0;
      const char* msg = gzerror(gz, &code);
      throw InputError(SourceLoc{files[file], line, 0}, "", std::string("read error: ") + msg);
    }
    if (n == 0) {
      eof = true;
      return false;
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  // The next record of the current file up to `delim` (exclusive), or false at the end.
  // Consumed bytes are skipped by `pos` and compacted away only when they are the larger half,
  // so taking many short records from a large buffer stays linear.
  bool take(const std::string& delim, std::string& out, int& start_line) {
    std::size_t search_from = pos;
    while (true) {
      const std::size_t at = delim.empty() ? std::string::npos : buffer.find(delim, search_from);
      if (at != std::string::npos) {
        out.assign(buffer, pos, at - pos);
        start_line = line;
        const auto begin = buffer.begin() + static_cast<long>(pos), end = buffer.begin() + static_cast<long>(at + delim.size());
        line += static_cast<int>(std::count(begin, end, '\n'));
        pos = at + delim.size();
        if (pos > (1u << 20) && pos > buffer.size() / 2) {
          buffer.erase(0, pos);
          pos = 0;
        }
        return true;
      }
      search_from = std::max(pos, buffer.size() >= delim.size() ? buffer.size() - delim.size() + 1 : 0);
      if (!fill()) break;
    }
    if (pos >= buffer.size()) return false;
    out.assign(buffer, pos, std::string::npos);
    buffer.clear();
    pos = 0;
    start_line = line;
    return true;
  }
};

DocumentReader::DocumentReader(std::vector<std::string> files, const DataSettings& settings)
    : state_(std::make_unique<State>()) {
  state_->files = std::move(files);
  state_->settings = settings;
  for (const auto& f : state_->files) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(f, ec);
    if (ec) throw InputError(SourceLoc{f, 0, 0}, "data.inputs", "cannot open: " + ec.message());
    state_->total += size;
  }
  if (!state_->files.empty()) state_->open_next();
}

DocumentReader::~DocumentReader() = default;

bool DocumentReader::next(RawDocument& doc) {
  State& s = *state_;
  std::string record;
  int line = 0;
  while (s.file < s.files.size()) {
    const std::string& path = s.files[s.file];
    const std::string delim = s.jsonl ? "\n" : s.settings.text_delimiter;
    if (!s.take(delim, record, line)) {
      s.done_bytes += std::filesystem::file_size(path);
      if (++s.file < s.files.size()) s.open_next();
      continue;
    }
    if (s.jsonl) {
      if (record.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
      parse_record(s.parser, record, SourceLoc{path, line, 0}, s.settings, doc);
      return true;
    }
    doc = RawDocument{};
    doc.where = SourceLoc{path, line, 0};
    doc.kind = DocKind::text;
    check_utf8(record, doc.where);
    doc.text = std::move(record);
    return true;
  }
  return false;
}

std::uint64_t DocumentReader::bytes_read() const {
  const State& s = *state_;
  if (s.file >= s.files.size() || !s.gz) return s.done_bytes;
  const auto offset = gzoffset(s.gz);
  return s.done_bytes + static_cast<std::uint64_t>(offset > 0 ? offset : 0);
}

std::uint64_t DocumentReader::bytes_total() const { return state_->total; }

}  // namespace llmlab
