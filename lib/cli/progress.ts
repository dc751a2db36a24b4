/**
 * Progress of a long command: a bar (cli-progress) when stderr is a terminal, plain lines
 * otherwise, so logs and pipes get readable text instead of control sequences.
 */
import * as cliProgress from "cli-progress";

/** Reports `done` of `total` steps, each with a label. */
export interface Progress {
  update(done: number, label: string): void;
  stop(): void;
}

/** A progress reporter writing to `stream` (stderr by default). */
export function createProgress(total: number, what: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      { stream, format: `${what} [{bar}] {value}/{total} {label}`, hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { label: "" });
    return { update: (done, label) => bar.update(done, { label }), stop: () => bar.stop() };
  }
  return {
    update: (done, label) => stream.write(`${what} ${done}/${total} ${label}\n`),
    stop: () => undefined,
  };
}
