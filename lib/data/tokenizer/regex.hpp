// Pre-tokenizer regexes from tokenizer.json (written for Oniguruma, the Hugging Face engine),
// run by PCRE2 with UTF, Unicode properties and JIT.
#pragma once

#include <cstddef>
#include <string>
#include <memory>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/error.hpp"

struct pcre2_real_code_8;  // PCRE2's compiled pattern (pcre2.h needs macros set before it)

namespace llmlab::tok {

// A [begin, end) byte range of some text.
struct Span {
  std::size_t begin = 0, end = 0;
};

// A non-owning reference to a callable taking an Arg: the split loops call it once per
// pre-token, where a std::function would allocate for lambdas capturing a few references.
template <class Arg>
class Visitor {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, Visitor>)
  Visitor(F&& f)  // implicit: call sites pass a lambda
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, Arg a) { (*static_cast<std::remove_reference_t<F>*>(o))(a); }) {}
  void operator()(Arg a) const { call_(object_, a); }

 private:
  void* object_;
  void (*call_)(void*, Arg);
};
using SpanVisitor = Visitor<Span>;

class Regex {
 public:
  // Throws InputError at `where`/`key` when PCRE2 rejects the pattern. `\s` is rewritten to
  // the White_Space list Oniguruma uses (PCRE2's \s also matches U+180E).
  Regex(std::string_view pattern, const SourceLoc& where, const std::string& key);
  ~Regex();
  Regex(Regex&& other) noexcept;
  Regex& operator=(Regex&&) = delete;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Splits text[piece] as Hugging Face's Split with behavior Isolated: each match and each
  // stretch between matches becomes a span (offsets into text), empty ones left out. Lookahead
  // sees only the piece, as in Hugging Face where each piece is its own string. An empty match
  // only marks a boundary; the search then resumes one character further. Safe from several
  // threads at once.
  void split(std::string_view text, Span piece, SpanVisitor visit) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

// Oniguruma syntax to PCRE2: `\s` (and `\S` outside classes) become the White_Space list;
// `\p{L}` and `\p{N}` gain the letters and numbers assigned since PCRE2 10.42's Unicode 14.0
// that the reference's Oniguruma knows (characters from 2022 on: CJK Extensions H and I,
// Kawi, Unicode 16 scripts). Other properties keep PCRE2's Unicode 14.0 view.
std::string onig_to_pcre2(std::string_view pattern);

}  // namespace llmlab::tok
