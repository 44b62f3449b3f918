// sharp's animated WebP of an animated GIF or WebP, with sharp's defaults (quality 80, effort 4),
// on one libvips thread: the peer of bench/animation.py.
//
//   node animated.mjs INPUT OUTPUT WIDTH REPEAT
//
// Prints {"seconds": [...], "bytes": N}; OUTPUT holds the file.
import { readFileSync, writeFileSync } from "node:fs";
import sharp from "sharp";

sharp.concurrency(1);
sharp.cache(false);

const [input, output, widthArg, repeatArg] = process.argv.slice(2);
const data = readFileSync(input);
const width = Number(widthArg);

async function once() {
  return sharp(data, { animated: true, failOn: "truncated" }).resize({ width, kernel: "lanczos3" }).webp().toBuffer();
}

await once(); // warm-up
const seconds = [];
let out;
for (let i = 0; i < Number(repeatArg || 1); i++) {
  const started = process.hrtime.bigint();
  out = await once();
  seconds.push(Number(process.hrtime.bigint() - started) / 1e9);
}
writeFileSync(output, out);
console.log(JSON.stringify({ seconds, bytes: out.length }));
