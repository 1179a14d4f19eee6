// Whole-file reads with transparent gzip decompression (zlib; concatenated members allowed).
#include "data/tokenizer/read_file.hpp"

#include <fmt/format.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.hpp"

namespace llmlab::tok {

namespace {

std::string gunzip(const std::string& path, const std::string& data) {
  z_stream z{};
  // 16 + MAX_WBITS: expect a gzip header and trailer (CRC checked by zlib).
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) throw Error("zlib: inflateInit2 failed");
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());  // tokenizer files are far below 4 GiB
  char buffer[1 << 16];
  int rc = Z_OK;
  while (true) {
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof buffer;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buffer, sizeof buffer - z.avail_out);
    if (rc == Z_STREAM_END) {
      if (z.avail_in == 0) break;
      inflateReset(&z);  // another gzip member follows
      continue;
    }
    if (rc != Z_OK) break;
  }
  const std::string message = z.msg != nullptr ? z.msg : rc == Z_BUF_ERROR ? "truncated" : fmt::format("zlib error {}", rc);
  inflateEnd(&z);
  if (rc != Z_STREAM_END) throw InputError(SourceLoc{path}, "", "corrupt gzip data: " + message);
  return out;
}

}  // namespace

std::string read_maybe_gzipped(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(SourceLoc{path}, "", fmt::format("cannot open: {}", std::strerror(errno)));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(SourceLoc{path}, "", "read error");
  if (data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1f && static_cast<unsigned char>(data[1]) == 0x8b)
    return gunzip(path, data);
  return data;
}

}  // namespace llmlab::tok
