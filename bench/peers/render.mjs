// sharp, rendering the same outputs as bench/renditions.py asks for, on one libvips thread.
//
//   node render.mjs INPUT OUTDIR SPEC_JSON REPEAT
//
// SPEC_JSON: {"widths": [2160, ...], "formats": [{"format": "avif", "quality": 55, "effort": 0, ...}]}
// (an optional "name" per format names its files WIDTH.NAME instead of WIDTH.FORMAT)
// Written the way sharp is fastest: per width one decode (with shrink-on-load) and resize to raw
// pixels, then every format encoded from those pixels. Prints {"seconds": [...], "bytes": N}.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";

sharp.concurrency(1);
sharp.cache(false);

const [input, outdir, specJson, repeatArg] = process.argv.slice(2);
const spec = JSON.parse(specJson);
const repeat = Number(repeatArg || 1);
const data = readFileSync(input);

function encoder(pipeline, f) {
  if (f.format === "avif") {
    return pipeline.avif({ quality: f.quality, effort: f.effort, chromaSubsampling: "4:2:0", bitdepth: 8 });
  }
  if (f.format === "webp") {
    return pipeline.webp({ quality: f.quality, effort: f.effort });
  }
  return pipeline.jpeg({
    quality: f.quality,
    progressive: f.progressive,
    optimiseCoding: true,
    trellisQuantisation: f.trellis,
    overshootDeringing: f.trellis,
    optimiseScans: f.trellis && f.progressive,
    quantisationTable: f.trellis ? 3 : 0,
  });
}

async function once(save) {
  let total = 0;
  for (const width of spec.widths) {
    const { data: raw, info } = await sharp(data, { limitInputPixels: 50_000_000, failOn: "truncated" })
      .rotate()
      .resize({ width, kernel: "lanczos3" })
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    for (const f of spec.formats) {
      const pixels = sharp(raw, { raw: { width: info.width, height: info.height, channels: info.channels } });
      const out = await encoder(pixels, f).toBuffer();
      total += out.length;
      if (save) writeFileSync(join(outdir, `${width}.${f.name || f.format}`), out);
    }
  }
  return total;
}

// Peak RSS from the kernel's high-water mark, which starts afresh at exec.
function peakRssMiB() {
  const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("VmHWM:"));
  return line ? Number(line.split(/\s+/)[1]) / 1024 : 0;
}

const seconds = [];
let bytes = 0;
await once(false); // warm-up: libraries load, encoders initialise
for (let i = 0; i < repeat; i++) {
  const started = process.hrtime.bigint();
  bytes = await once(i === 0);
  seconds.push(Number(process.hrtime.bigint() - started) / 1e9);
}
console.log(JSON.stringify({ seconds, bytes, rss_mib: peakRssMiB() }));
