/**
 * The head of a causal-LM training step alone: a (1016, 256) hidden block by GPT-2's (50257, 256)
 * tied head, loss and input gradient, through the unfused graph (the logits, then crossEntropy)
 * and through linearCrossEntropy at several rows per chunk. Best of 4 runs each, wall clock.
 * The default chunk of linearCrossEntropy (lib/linear-cross-entropy.ts) was chosen from this.
 *
 * Run: node dist/bench/diagnose/linear-cross-entropy.js [--vocab N]
 */
import { Tensor, crossEntropy, linearCrossEntropy, randn, tensor, tidy } from "../../lib";

const ROWS = 1016; // 8 × 127 shifted positions, as the bench's training step
const HIDDEN = 256;

function bestMs(fn: () => void, runs = 4): number {
  fn();
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e6);
  }
  return best;
}

function main(): void {
  const at = process.argv.indexOf("--vocab");
  const vocab = at >= 0 ? Number(process.argv[at + 1]) : 50257;
  const weight = randn([vocab, HIDDEN]).mul(0.02);
  const hidden = randn([ROWS, HIDDEN]);
  hidden.requiresGrad = true;
  const target = tensor(
    Array.from({ length: ROWS }, (_, i) => (i * 31 + 7) % vocab),
    { dtype: "int64" },
  );
  const step = (loss: () => Tensor) => () =>
    tidy(() => {
      hidden.grad = null;
      loss().backward();
    });
  console.log(`head ${ROWS} × ${HIDDEN} by ${vocab}: loss and input gradient, best of 4 (ms)`);
  console.log(`  logits + crossEntropy: ${bestMs(step(() => crossEntropy(hidden.matmul(weight.transpose(0, 1)), target))).toFixed(1)}`);
  for (const chunkRows of [32, 64, 128, 166, 192, 256, 512, ROWS]) {
    const ms = bestMs(step(() => linearCrossEntropy(hidden, weight, target, { chunkRows })));
    console.log(`  linearCrossEntropy, ${chunkRows} rows per chunk: ${ms.toFixed(1)}`);
  }
  console.log(`  linearCrossEntropy, default chunk: ${bestMs(step(() => linearCrossEntropy(hidden, weight, target))).toFixed(1)}`);
}

main();
