// Streams documents from dataset files: JSONL (one JSON object per line) or plain text (a file
// per document, or documents separated by a delimiter), each optionally gzip-compressed.
// A bad record (malformed JSON, invalid UTF-8, missing field) throws InputError naming
// file:line *after* the record has been consumed, so a caller that skips bad records can go on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/source/document.hpp"
#include "spec/settings.hpp"

namespace llmlab {

class DocumentReader {
 public:
  DocumentReader(std::vector<std::string> files, const DataSettings& settings);
  ~DocumentReader();

  // False at the end of the last file.
  bool next(RawDocument& doc);
  // Compressed bytes consumed so far and in all, for progress and ETA.
  std::uint64_t bytes_read() const;
  std::uint64_t bytes_total() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Throws InputError at `where` (line advanced to the offending byte) unless `text` is UTF-8.
void check_utf8(const std::string& text, const SourceLoc& where);

}  // namespace llmlab
