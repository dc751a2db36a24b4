/**
 * Training progress: a live bar on a terminal (cli-progress), plain lines otherwise, so logs
 * of CI runs stay readable.
 */
import { SingleBar, Presets } from "cli-progress";

export interface ProgressFields {
  loss: number;
  tokensPerSecond: number;
}

/** Reports `total` steps of a phase called `label`. */
export class Progress {
  readonly #bar: SingleBar | null;
  readonly #label: string;
  readonly #total: number;
  readonly #every: number;

  constructor(label: string, total: number) {
    this.#label = label;
    this.#total = total;
    this.#every = Math.max(1, Math.round(total / 10));
    if (process.stdout.isTTY) {
      this.#bar = new SingleBar(
        { format: `${label} [{bar}] step {value}/{total} | loss {loss} | {tps} tokens/s`, hideCursor: true, barsize: 24 },
        Presets.shades_classic,
      );
      this.#bar.start(total, 0, { loss: "-", tps: "-" });
    } else {
      this.#bar = null;
    }
  }

  /** Records that `step` (1-based) finished with these figures. */
  update(step: number, fields: ProgressFields): void {
    const loss = fields.loss.toFixed(4);
    const tps = Math.round(fields.tokensPerSecond).toLocaleString("en-US");
    if (this.#bar) this.#bar.update(step, { loss, tps });
    else if (step % this.#every === 0 || step === this.#total) console.log(`${this.#label} step ${step}/${this.#total} | loss ${loss} | ${tps} tokens/s`);
  }

  /** Closes the bar. */
  stop(): void {
    this.#bar?.stop();
  }
}
