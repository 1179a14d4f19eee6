// Throughput of the Hugging Face tokenizers library (Node bindings) on the same documents as
// benchmarks/tokenize_speed.cpp: each file one document, encode(text, add_special_tokens=false),
// one warm-up pass, then the median of REPEATS passes. Prints the same line format.
// Usage: node bench_reference.js TOKENIZER_JSON REPEATS FILE...
'use strict';
const fs = require('fs');
const { Tokenizer } = require('@anush008/tokenizers');

async function pass(tokenizer, docs) {
  let tokens = 0;
  for (const doc of docs) tokens += (await tokenizer.encode(doc, null, { addSpecialTokens: false })).getLength();
  return tokens;
}

async function main() {
  const [tokenizerPath, repeatsArg, ...files] = process.argv.slice(2);
  if (files.length === 0) {
    console.error('usage: node bench_reference.js TOKENIZER_JSON REPEATS FILE...');
    process.exit(2);
  }
  const tokenizer = Tokenizer.fromFile(tokenizerPath);
  const docs = files.map((f) => fs.readFileSync(f, 'utf8'));
  const bytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
  let tokens = await pass(tokenizer, docs);
  const seconds = [];
  for (let i = 0; i < Number(repeatsArg); i++) {
    const start = process.hrtime.bigint();
    tokens = await pass(tokenizer, docs);
    seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  seconds.sort((a, b) => a - b);
  const n = seconds.length;
  const median = n % 2 ? seconds[(n - 1) / 2] : (seconds[n / 2 - 1] + seconds[n / 2]) / 2;
  const mb = bytes / 1e6;
  console.log(`${(mb / median).toFixed(2)} MB/s (median of ${n}; ${(mb / seconds[n - 1]).toFixed(2)}..` +
              `${(mb / seconds[0]).toFixed(2)}), ${docs.length} documents, ${bytes} bytes, ${tokens} tokens`);
}

main().catch((e) => {
  console.error(`bench_reference.js: ${e.stack || e}`);
  process.exit(1);
});
