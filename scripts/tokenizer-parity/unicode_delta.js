// Generates lib/data/tokenizer/unicode_delta.cpp: where the Unicode versions of the reference
// (the Hugging Face tokenizers library 0.22.2) and of Debian 12's libraries differ.
// 1. Letters and numbers that the reference's Oniguruma (Unicode 16) matches with \p{L} and
//    \p{N} but PCRE2 10.42 (Unicode 14.0) does not know.
// 2. Word characters (Rust regex \w, used by single_word added tokens) assigned since 14.0.
// 3. Characters that the reference's NFC (unicode-normalization-alignments, Unicode 9.0
//    tables) leaves alone but utf8proc (Unicode 15.0) would reorder, decompose or compose.
// Candidates come from Node's own Unicode tables (newer than all of these) against Python
// 3.11's unicodedata (Unicode 14.0, as PCRE2 10.42) or Perl's Unicode::UCD ages; each is then
// asked of the reference itself, so the tables say what the reference does, not what a
// version number suggests.
// Usage: node unicode_delta.js QWEN3_TOKENIZER_JSON > lib/data/tokenizer/unicode_delta.cpp
'use strict';
const fs = require('fs');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('@anush008/tokenizers');

const allCodePoints = function* () {
  for (let c = 0; c <= 0x10ffff; c++) if (c < 0xd800 || c > 0xdfff) yield c;
};

// General category initial ('L', 'N', 'M', ...) of every code point in Unicode 14.0; 'n' for
// unassigned ones (Cn).
function unicode14Categories() {
  const script = 'import sys, unicodedata\n' +
      'assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version\n' +
      'cat = lambda c: "n" if c == "Cn" else c[0]\n' +
      'sys.stdout.write("".join(cat(unicodedata.category(chr(c))) if 0xD800 > c or c > 0xDFFF else "C" ' +
      'for c in range(0x110000)))\n';
  return execFileSync('python3.11', ['-c', script], { maxBuffer: 1 << 22 }).toString();
}

// Those of `codePoints` that Unicode 9.0 had not assigned.
function notInUnicode9(codePoints) {
  const script = 'while (<STDIN>) { chomp; print "$_\\n" unless chr(hex $_) =~ /\\p{In=9.0}/ }';
  const out = execFileSync('perl', ['-e', script], { input: codePoints.map((c) => c.toString(16)).join('\n') + '\n' });
  return new Set(out.toString().split('\n').filter((l) => l).map((l) => parseInt(l, 16)));
}

// A Qwen3 tokenizer.json edited for probing: no normalizer, a prefix space on every pre-token
// (so pre-token boundaries show as 'Ġ'), and a single_word added token.
function probeTokenizer(base) {
  const t = JSON.parse(JSON.stringify(base));
  t.normalizer = null;
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [t.pre_tokenizer.pretokenizers[0],
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: false }] };
  t.added_tokens.find((a) => a.content === '<think>').single_word = true;
  return Tokenizer.fromString(JSON.stringify(t));
}

async function lettersAndNumbers(probe, old) {
  const letter = /\p{L}/u, number = /\p{N}/u;
  const added = { L: [], N: [] };
  for (const c of allCodePoints()) {
    const x = String.fromCodePoint(c);
    const kind = letter.test(x) ? 'L' : number.test(x) ? 'N' : null;
    if (kind === null || old[c] === kind) continue;
    // "aX" is one pre-token only if X is a letter; "!X" is two only if X is a number.
    const tokens = (await probe.encode(kind === 'L' ? 'a' + x : '!' + x, null, { addSpecialTokens: false })).getTokens();
    const pieces = tokens.filter((t) => t.startsWith('\u0120')).length;
    if (pieces === (kind === 'L' ? 1 : 2)) added[kind].push(c);
  }
  return added;
}

async function wordChars(probe, old) {
  const word = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
  const thinkId = probe.tokenToId('<think>');
  const added = [];
  for (const c of allCodePoints()) {
    const x = String.fromCodePoint(c);
    if (old[c] !== 'n' || !word.test(x)) continue;  // only characters Unicode 14.0 lacks
    // A single_word token followed by a word character is not matched.
    const ids = (await probe.encode('<think>' + x, null, { addSpecialTokens: false })).getIds();
    if (ids[0] !== thinkId) added.push(c);
  }
  return added;
}

// Characters whose NFC is not the identity in some context: a combining class (reordered
// against U+0345, class 240, or U+0334, class 1), a decomposition, or a part of one.
function normalizationActive() {
  const active = new Set();
  for (const c of allCodePoints()) {
    const x = String.fromCodePoint(c);
    const nfd = x.normalize('NFD');
    if (nfd !== x) {
      active.add(c);
      for (const part of nfd) active.add(part.codePointAt(0));
    } else if (('\u0345' + x).normalize('NFD') !== '\u0345' + x || (x + '\u0334').normalize('NFD') !== x + '\u0334') {
      active.add(c);
    }
  }
  return [...active].sort((a, b) => a - b);
}

async function nfcInert(tokenizer) {
  const nfc = async (s) => tokenizer.decode((await tokenizer.encode(s, null, { addSpecialTokens: false })).getIds(), false);
  const active = normalizationActive();
  const inert = notInUnicode9(active);
  // The reference must agree with a modern NFC on every character Unicode 9.0 had.
  for (const c of active) {
    if (inert.has(c)) continue;
    const x = String.fromCodePoint(c);
    for (const s of ['\u0345' + x, x + '\u0334', x.normalize('NFD'), 'a' + x + '\u0301'])
      if ((await nfc(s)) !== s.normalize('NFC')) throw new Error(`reference NFC differs on U+${c.toString(16)} (in Unicode 9.0)`);
  }
  return [...inert].sort((a, b) => a - b);
}

function cppRanges(name, codePoints) {
  const spans = [];
  for (const c of codePoints) {
    if (spans.length && spans[spans.length - 1][1] === c - 1) spans[spans.length - 1][1] = c;
    else spans.push([c, c]);
  }
  const hex = (c) => `0x${c.toString(16).toUpperCase()}`;
  const items = spans.map(([a, b]) => `{${hex(a)}, ${hex(b)}}`);
  const lines = [];
  for (let i = 0; i < items.length; i += 5) lines.push('      ' + items.slice(i, i + 5).join(', ') + ',');
  return `std::span<const CodePointRange> ${name}() {
  static constexpr CodePointRange kRanges[] = {
${lines.join('\n')}
  };
  return kRanges;
}`;
}

async function main() {
  const base = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const probe = probeTokenizer(base);
  const old = unicode14Categories();
  const { L, N } = await lettersAndNumbers(probe, old);
  const word = await wordChars(probe, old);
  const inert = await nfcInert(Tokenizer.fromString(JSON.stringify(base)));
  process.stdout.write(`// Generated by scripts/tokenizer-parity/unicode_delta.js; do not edit.
// Where the Hugging Face tokenizers library (0.22.2) and Debian 12's PCRE2 (Unicode 14.0) and
// utf8proc (Unicode 15.0) disagree, as probed from the library: ${L.length} letters and ${N.length} numbers
// its \\p{L} and \\p{N} match, ${word.length} characters its \\w matches (all assigned since Unicode 14.0),
// and ${inert.length} characters its NFC (Unicode 9.0 tables) leaves untouched.
#include "data/tokenizer/unicode_text.hpp"

namespace llmlab::tok {

${cppRanges('letters_since_unicode14', L)}

${cppRanges('numbers_since_unicode14', N)}

${cppRanges('word_chars_since_unicode14', word)}

${cppRanges('nfc_inert_ranges', inert)}

}  // namespace llmlab::tok
`);
}

main().catch((e) => {
  console.error(`unicode_delta.js: ${e.stack || e}`);
  process.exit(1);
});
