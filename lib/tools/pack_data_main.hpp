// pack-data as a library function (apps/pack-data forwards argv; tests call it in-process).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace llmlab {

// Exit codes: 0 success, 1 runtime failure (I/O), 2 bad input. Errors are one line on `err`.
int pack_data_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace llmlab
