// Safetensors: round trips, byte-exact agreement with files built by hand from the spec,
// exact half-precision conversion, and one InputError naming file and tensor per corruption.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "model/safetensors.hpp"
#include "test_shard_support.hpp"

using namespace llmlab;
using llmlab::test::ScratchDir;

namespace {

std::string le64(std::uint64_t v) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &v, 8);
  return out;
}

template <class T>
std::string raw(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A file as the spec describes it: length, header (space padded to 8 when asked), buffer.
std::string st_file(std::string header, const std::string& buffer, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size()) + header + buffer;
}

// The message of the InputError that opening `bytes` as a file raises, or "" when none is.
std::string open_error(const ScratchDir& dir, const std::string& bytes, std::string& path) {
  static int counter = 0;
  path = dir.path("bad" + std::to_string(counter++) + ".safetensors");
  test::write_bytes(path, bytes);
  try {
    SafetensorsFile file(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

}  // namespace

TEST_CASE("safetensors: round trip of several dtypes and shapes") {
  ScratchDir dir("safetensors");
  const auto path = dir.path("model.safetensors");
  const std::vector<float> f32{1.5f, -2.0f, 0.0f, 3.25f, 1e-30f, 7.0f};
  const std::vector<double> f64{1.0, -1e300, 0.1, 4.0};
  const std::vector<std::uint16_t> f16{0x3c00, 0xc000, 0x7bff};
  const std::vector<std::uint16_t> bf16{0x3f80, 0x4049, 0xff80, 0x0001, 0x8000};
  const std::vector<std::int64_t> i64{std::numeric_limits<std::int64_t>::min(), 42};
  const std::vector<std::int32_t> i32{-7};
  const std::vector<std::uint8_t> u8{0, 1, 2, 3, 250, 255, 9};
  const std::vector<std::uint8_t> flags{1, 0, 1};
  const float scalar = 0.125f;
  std::vector<TensorToWrite> tensors{
      {"wte", "F32", {2, 3}, f32.data()},      {"f64", "F64", {4}, f64.data()},
      {"half", "F16", {3, 1}, f16.data()},     {"brain", "BF16", {5}, bf16.data()},
      {"ids", "I64", {2}, i64.data()},         {"count", "I32", {}, i32.data()},
      {"bytes", "U8", {7}, u8.data()},         {"mask", "BOOL", {3}, flags.data()},
      {"empty", "F32", {0, 4}, nullptr},       {"scale", "F32", {}, &scalar},
  };
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "quote \" newline \n unicode \xc3\xa9"}};
  write_safetensors(path, tensors, metadata);
  CHECK(dir.files() == std::set<std::string>{"model.safetensors"});

  SafetensorsFile file(path);
  CHECK(file.metadata() == metadata);
  CHECK(file.names() == std::vector<std::string>{"brain", "bytes", "count", "empty", "f64", "half", "ids", "mask", "scale", "wte"});
  for (const auto& t : tensors) {
    CAPTURE(t.name);
    const auto* info = file.find(t.name);
    REQUIRE(info != nullptr);
    CHECK(info->dtype == t.dtype);
    CHECK(info->shape == t.shape);
    const auto elem = *safetensors_dtype_size(t.dtype);
    std::int64_t numel = 1;
    for (const auto d : t.shape) numel *= d;
    CHECK(info->numel == numel);
    CHECK(info->bytes == static_cast<std::uint64_t>(numel) * elem);
    if (info->bytes > 0) CHECK(std::memcmp(info->data, t.data, info->bytes) == 0);
    // The reference order (descending alignment) plus the 8-byte header keeps each aligned.
    CHECK(reinterpret_cast<std::uintptr_t>(info->data) % elem == 0);
  }
  CHECK(file.find("nope") == nullptr);

  std::vector<float> out(6);
  file.read_f32("wte", {2, 3}, out.data());
  CHECK(out == f32);
  float s = 0;
  file.read_f32("scale", {}, &s);
  CHECK(s == 0.125f);
  file.read_f32("empty", {0, 4}, nullptr);

  // The order of the input does not matter: the file is the same bytes.
  const auto first = test::read_bytes(path);
  std::reverse(tensors.begin(), tensors.end());
  write_safetensors(path, tensors, metadata);
  CHECK(test::read_bytes(path) == first);
}

TEST_CASE("safetensors: bytes match files built by hand from the spec") {
  ScratchDir dir("safetensors");
  const auto path = dir.path("x.safetensors");

  SUBCASE("one tensor whose header needs no padding") {
    const std::vector<float> v{0, 1, 2, 3, 4, 5};
    write_safetensors(path, {{"attn.0", "F32", {1, 2, 3}, v.data()}});
    const std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
    REQUIRE(header.size() == 64);
    CHECK(test::read_bytes(path) == le64(64) + header + raw(v));
  }
  SUBCASE("no tensors") {
    write_safetensors(path, {});
    CHECK(test::read_bytes(path) == le64(8) + "{}      ");
    write_safetensors(path, {}, {{"framework", "pt"}});
    CHECK(test::read_bytes(path) == le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
  }
  SUBCASE("metadata first then tensors by descending alignment then name with space padding") {
    const std::vector<std::uint16_t> b{0x3f80, 0x4000};
    const std::vector<float> a{2.5f};
    const std::vector<std::int64_t> c{-3};
    const std::vector<std::uint8_t> z{7, 8, 9};
    write_safetensors(path,
                      {{"z", "U8", {3}, z.data()},
                       {"b", "BF16", {2}, b.data()},
                       {"e", "F32", {0}, nullptr},
                       {"a", "F32", {1, 1}, a.data()},
                       {"c", "I64", {1}, c.data()}},
                      {{"format", "pt"}, {"a\tkey", "v\\1"}});
    const std::string header =
        R"({"__metadata__":{"a\tkey":"v\\1","format":"pt"},)"
        R"("c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
        R"("a":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]},)"
        R"("e":{"dtype":"F32","shape":[0],"data_offsets":[12,12]},)"
        R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},)"
        R"("z":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}})";
    const auto expected = st_file(header, raw(c) + raw(a) + raw(b) + raw(z));
    CHECK((expected.size() - 19) % 8 == 0);
    CHECK(test::read_bytes(path) == expected);
  }
  SUBCASE("files from other writers: unpadded header any tensor order and whitespace") {
    const std::vector<float> a{1, 2};
    const std::vector<std::uint16_t> h{0x3c00};
    const std::string header = R"({"h" : {"shape":[1], "dtype":"F16", "data_offsets":[8,10]},)"
                               R"( "a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  )";
    REQUIRE(header.size() % 4 != 0);  // so the data start unaligned
    test::write_bytes(path, st_file(header, raw(a) + raw(h), false));
    SafetensorsFile file(path);
    CHECK(file.metadata().empty());
    std::vector<float> out(2);
    file.read_f32("a", {2}, out.data());
    CHECK(out == a);
    float one = 0;
    file.read_f32("h", {1}, &one);
    CHECK(one == 1.0f);
  }
}

TEST_CASE("safetensors: bf16 and f16 convert to f32 exactly") {
  ScratchDir dir("safetensors");
  const auto path = dir.path("half.safetensors");
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  write_safetensors(path, {{"bf", "BF16", {256, 256}, all.data()}, {"fp", "F16", {65536}, all.data()}});
  SafetensorsFile file(path);
  std::vector<float> bf(65536), fp(65536);
  file.read_f32("bf", {256, 256}, bf.data());
  file.read_f32("fp", fp.data(), 65536);

  int mismatches = 0;
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    // bf16: the top half of the float32, NaN payloads included.
    if (!same_bits(bf[bits], std::bit_cast<float>(bits << 16)) && ++mismatches < 5) FAIL_CHECK("bf16 bits " << bits << " -> " << bf[bits]);
    // f16 from its definition: (-1)^s * 2^(e-15) * 1.m, subnormals 2^-14 * 0.m.
    const auto sign = (bits >> 15) != 0 ? -1.0 : 1.0;
    const auto e = static_cast<int>((bits >> 10) & 31u);
    const auto m = static_cast<int>(bits & 1023u);
    if (e == 31) {
      if (m == 0 ? !(std::isinf(fp[bits]) && std::signbit(fp[bits]) == (sign < 0)) : !std::isnan(fp[bits]))
        if (++mismatches < 5) FAIL_CHECK("f16 bits " << bits << " -> " << fp[bits]);
      continue;
    }
    const double expected = sign * (e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25));
    if (!same_bits(fp[bits], static_cast<float>(expected)) && ++mismatches < 5)
      FAIL_CHECK("f16 bits " << bits << " -> " << fp[bits] << " expected " << expected);
  }
  CHECK(mismatches == 0);
  CHECK(fp[0x3c00] == 1.0f);
  CHECK(fp[0x7bff] == 65504.0f);
  CHECK(fp[0x0001] == std::ldexp(1.0f, -24));
  CHECK(same_bits(fp[0x8000], -0.0f));
  CHECK(bf[0x3f80] == 1.0f);
  CHECK(bf[0xc0a0] == -5.0f);
}

TEST_CASE("safetensors: f64 converts to f32 and other dtypes are refused") {
  ScratchDir dir("safetensors");
  const auto path = dir.path("mixed.safetensors");
  const std::vector<double> d{0.5, -3.25, 1e300, -1e300, 16777217.0};
  const std::vector<std::int32_t> ints{1, 2};
  write_safetensors(path, {{"d", "F64", {5}, d.data()}, {"i", "I32", {2}, ints.data()}});
  SafetensorsFile file(path);
  std::vector<float> out(5);
  file.read_f32("d", {5}, out.data());
  CHECK(out[0] == 0.5f);
  CHECK(out[1] == -3.25f);
  CHECK(out[2] == std::numeric_limits<float>::infinity());
  CHECK(out[3] == -std::numeric_limits<float>::infinity());
  CHECK(out[4] == 16777216.0f);  // rounded to nearest even

  const auto message = [&](auto&& call) -> std::string {
    try {
      call();
    } catch (const InputError& e) {
      return e.what();
    }
    return "no error";
  };
  const auto shape = message([&] { file.read_f32("d", {5, 1}, out.data()); });
  CHECK(shape.find(path) != std::string::npos);
  CHECK(shape.find("tensor \"d\"") != std::string::npos);
  CHECK(shape.find("[5] in the file, expected [5, 1]") != std::string::npos);
  const auto count = message([&] { file.read_f32("d", out.data(), 4); });
  CHECK(count.find("holds 5 elements, expected 4") != std::string::npos);
  const auto dtype = message([&] { file.read_f32("i", {2}, out.data()); });
  CHECK(dtype.find("tensor \"i\": dtype I32 cannot be read as float32") != std::string::npos);
  const auto missing = message([&] { file.read_f32("lm_head", {5}, out.data()); });
  CHECK(missing.find(path + ": tensor \"lm_head\": not in the file") != std::string::npos);
}

TEST_CASE("safetensors: each corruption is an input error naming the file and the tensor") {
  ScratchDir dir("safetensors");
  const auto f32x2 = std::string(8, '\1');
  struct Case {
    const char* what;
    std::string bytes;
    std::string expect;  // substring after "<path>: "
  };
  const std::vector<Case> cases{
      {"empty file", "", "truncated: 0 bytes"},
      {"shorter than the length field", std::string("\x10\0\0", 3), "truncated: 3 bytes"},
      {"absurd header length", le64(std::uint64_t{1} << 40) + "{}", "header length 1099511627776 exceeds"},
      {"header longer than the file", le64(64) + "{}", "truncated: the header length is 64 bytes but only 2 follow"},
      {"not json at all", le64(8) + "PK\3\4xxxx", "the header does not start with '{': not a safetensors file"},
      {"bad json", st_file(R"({"a":{"dtype":"F32",)", ""), "the header is not valid JSON"},
      {"trailing garbage", st_file(R"({}x)", ""), "the header is not valid JSON"},
      {"unknown dtype", st_file(R"({"a":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}})", f32x2),
       "tensor \"a\": unknown dtype \"F12\""},
      {"shape does not match offsets", st_file(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", f32x2),
       "tensor \"a\": shape [2, 2] of F32 needs 16 bytes but data_offsets [0, 8] hold 8"},
      {"negative dimension", st_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x2),
       "tensor \"a\": shape [-2] has an entry that is not a non-negative integer"},
      {"fractional dimension", st_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", f32x2),
       "tensor \"a\": shape [2.0] has an entry"},
      {"overflowing shape",
       st_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", f32x2),
       "tensor \"a\": shape [4294967296, 4294967296] overflows"},
      {"offsets backwards", st_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}})", f32x2),
       "tensor \"a\": data_offsets [8, 0] end before they begin"},
      {"offsets not a pair", st_file(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0]}})", f32x2),
       "tensor \"a\": data_offsets must be [begin, end]"},
      {"missing dtype", st_file(R"({"a":{"shape":[8],"data_offsets":[0,8]}})", f32x2), "tensor \"a\": missing dtype"},
      {"unknown field", st_file(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8],"quant":"q4"}})", f32x2),
       "tensor \"a\": unknown field \"quant\""},
      {"overlap",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               f32x2 + "1234"),
       "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\", which ends at 8"},
      {"gap",
       st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
               f32x2 + "1234"),
       "tensor \"b\": data_offsets [8, 12] leave a gap: the previous tensor ends at 4"},
      {"out of range", st_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", f32x2),
       "tensor \"a\": data_offsets [0, 16] run past the 8-byte data buffer"},
      {"trailing bytes", st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f32x2),
       "4 unused bytes after the last tensor"},
      {"duplicate name",
       st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
               f32x2),
       "tensor \"a\": appears twice in the header"},
      {"duplicate field", st_file(R"({"a":{"dtype":"F32","dtype":"U8","shape":[8],"data_offsets":[0,8]}})", f32x2),
       "tensor \"a\": key \"dtype\" appears twice"},
      {"metadata not strings", st_file(R"({"__metadata__":{"step":100}})", ""), "__metadata__: value of \"step\" is not a string"},
      {"metadata not an object", st_file(R"({"__metadata__":"x"})", ""), "__metadata__: must be an object"},
      {"entry not an object", st_file(R"({"a":[1,2]})", ""), "tensor \"a\": entry is not an object"},
      {"invalid utf8 in header", st_file("{\"a\xff\":{}}", ""), "the header is not valid JSON"},
  };
  for (const auto& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    std::string path;
    const auto message = open_error(dir, c.bytes, path);
    CHECK(message.find(path + ": " + c.expect) == 0);
    CHECK(message.find('\n') == std::string::npos);
    if (message.find(path + ": " + c.expect) != 0) MESSAGE("got: " << message);
  }

  std::string path = dir.path("missing.safetensors");
  try {
    SafetensorsFile file(path);
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()) == path + ": cannot open: No such file or directory");
  }
}

TEST_CASE("safetensors: the writer refuses bad tensors before touching the file") {
  ScratchDir dir("safetensors");
  const auto path = dir.path("keep.safetensors");
  const std::vector<float> v{1, 2};
  write_safetensors(path, {{"w", "F32", {2}, v.data()}});
  const auto before = test::read_bytes(path);
  const auto message = [&](const std::vector<TensorToWrite>& tensors) -> std::string {
    try {
      write_safetensors(path, tensors);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK(message({{"w", "F31", {2}, v.data()}}) == path + ": tensor \"w\": unknown dtype \"F31\"");
  CHECK(message({{"w", "F32", {2}, v.data()}, {"w", "F32", {1}, v.data()}}) == path + ": tensor \"w\": appears twice");
  CHECK(message({{"w", "F32", {-1}, v.data()}}).find("tensor \"w\": shape [-1] has a negative dimension") != std::string::npos);
  CHECK(message({{"w", "F32", {2}, nullptr}}) == path + ": tensor \"w\": 8 bytes of data but a null pointer");
  CHECK(message({{"__metadata__", "F32", {2}, v.data()}}).find("reserved") != std::string::npos);
  CHECK(message({{"", "F32", {2}, v.data()}}).find("needs a name") != std::string::npos);
  CHECK(message({{"bad\xff", "F32", {2}, v.data()}}).find("not valid UTF-8") != std::string::npos);
  CHECK(test::read_bytes(path) == before);
  CHECK(dir.files() == std::set<std::string>{"keep.safetensors"});
}

TEST_CASE("safetensors: a write that fails midway leaves the previous file and no temporary") {
  ScratchDir dir("safetensors");
  const auto path = dir.path("model.safetensors");
  const std::vector<float> small{1, 2, 3};
  write_safetensors(path, {{"w", "F32", {3}, small.data()}});
  const auto before = test::read_bytes(path);
  const std::vector<float> big(1 << 20, 0.5f);  // 4 MiB: fails while streaming the data
  const int code = test::run_with_file_limit(64 << 10, dir.path("probe"), [&] {
    try {
      write_safetensors(path, {{"w", "F32", {1 << 20}, big.data()}, {"b", "F32", {3}, small.data()}});
      return 1;  // no error: wrong
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.find(path) == std::string::npos) return 2;
      if (what.find("File too large") == std::string::npos) return 3;
      return 0;
    }
  });
  if (code == test::kCannotLimit || code == test::kForkFailed) {
    MESSAGE("cannot simulate a full disk here (RLIMIT_FSIZE not enforced or fork failed); skipped");
    return;
  }
  CHECK(code == 0);
  CHECK(test::read_bytes(path) == before);
  CHECK(dir.files() == std::set<std::string>{"model.safetensors"});
  SafetensorsFile file(path);
  CHECK(file.names() == std::vector<std::string>{"w"});
}
