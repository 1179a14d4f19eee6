// Prints the ids the Hugging Face tokenizers library (0.22, Node bindings) gives each string
// of a JSON-lines file, encode(text, add_special_tokens=false), one JSON array per line: the
// reference side of tests/cli/tokenizer_parity.sh. With --records it prints
// {"text", "ids", "decoded"} objects instead (tests/data/tokenizers/*_known_ids.jsonl).
// Usage: node reference_ids.js TOKENIZER_JSON STRINGS_JSONL [--records]
'use strict';
const fs = require('fs');
const zlib = require('zlib');
const { Tokenizer } = require('@anush008/tokenizers');

function readText(path) {
  const raw = fs.readFileSync(path);
  return (raw[0] === 0x1f && raw[1] === 0x8b ? zlib.gunzipSync(raw) : raw).toString('utf8');
}

async function main() {
  const [tokenizerPath, stringsPath, flag] = process.argv.slice(2);
  if (!stringsPath) {
    console.error('usage: node reference_ids.js TOKENIZER_JSON STRINGS_JSONL [--records]');
    process.exit(2);
  }
  const tokenizer = Tokenizer.fromString(readText(tokenizerPath));
  const lines = fs.readFileSync(stringsPath, 'utf8').split('\n').filter((l) => l.length > 0);
  const out = [];
  for (const line of lines) {
    const text = JSON.parse(line);
    const ids = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
    if (flag === '--records') {
      const decoded = await tokenizer.decode(ids, false);
      out.push(JSON.stringify({ text, ids, decoded }));
    } else {
      out.push(JSON.stringify(ids));
    }
  }
  fs.writeSync(1, out.join('\n') + (out.length ? '\n' : ''));
}

main().catch((e) => {
  console.error(`reference_ids.js: ${e.stack || e}`);
  process.exit(1);
});
