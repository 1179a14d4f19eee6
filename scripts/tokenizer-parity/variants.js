// Writes variants of a tokenizer.json that exercise what the shipped Qwen3 and Llama 3 files
// leave untested: added-token lstrip / rstrip / single_word / normalized flags (with NFC), a
// GPT-2 style lone ByteLevel with prefix space and regex, ByteLevel's prefix space after a
// Split, and two Split steps. Each is compared with the reference like the real files.
// Usage: node variants.js BASE_TOKENIZER_JSON OUT_DIR   (BASE: the Qwen3 tokenizer.json)
'use strict';
const fs = require('fs');
const path = require('path');

const [basePath, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: node variants.js BASE_TOKENIZER_JSON OUT_DIR');
  process.exit(2);
}
const base = JSON.parse(fs.readFileSync(basePath, 'utf8'));
const clone = () => JSON.parse(JSON.stringify(base));
const split = base.pre_tokenizer.pretokenizers[0];
const byteLevel = (addPrefixSpace, useRegex) =>
  ({ type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: false, use_regex: useRegex });

const variants = {};

variants['added-flags'] = (() => {
  const t = clone();
  const set = (content, flags) => Object.assign(t.added_tokens.find((a) => a.content === content), flags);
  set('<|im_start|>', { lstrip: true, rstrip: true });
  set('<|im_end|>', { rstrip: true });
  set('<think>', { single_word: true });
  set('</think>', { normalized: true });
  set('<tool_call>', { lstrip: true, normalized: true, special: false });
  let id = Math.max(...t.added_tokens.map((a) => a.id)) + 1;
  const add = (content, flags) => t.added_tokens.push(Object.assign(
      { id: id++, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false }, flags));
  add('\u00c5', { normalized: true });                  // also matches A + ring and the angstrom sign after NFC
  add('hello', { single_word: true, lstrip: true });
  add('world', { rstrip: true });
  add('e\u0301x', { normalized: true });              // its pattern is the NFC form
  return t;
})();

variants['gpt2-style'] = (() => {
  const t = clone();
  t.normalizer = null;
  t.pre_tokenizer = byteLevel(true, true);
  return t;
})();

variants['split-prefix-space'] = (() => {
  const t = clone();
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [split, byteLevel(true, false)] };
  return t;
})();

variants['two-splits'] = (() => {
  const t = clone();
  const digits = { type: 'Split', pattern: { Regex: '\\p{N}{1,2}' }, behavior: 'Isolated', invert: false };
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [digits, split, byteLevel(false, true)] };
  return t;
})();

fs.mkdirSync(outDir, { recursive: true });
for (const [name, t] of Object.entries(variants)) fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(t));
console.log(Object.keys(variants).map((n) => path.join(outDir, `${n}.json`)).join('\n'));
