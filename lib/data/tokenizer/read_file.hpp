// Reading a whole file that may be gzip-compressed (tokenizer.json.gz ships in tests/data).
#pragma once

#include <string>

namespace llmlab::tok {

// The file's bytes, decompressed when they start with the gzip magic (1f 8b), whatever the
// name. Throws InputError naming the file when it cannot be read or the gzip data is corrupt.
std::string read_maybe_gzipped(const std::string& path);

}  // namespace llmlab::tok
