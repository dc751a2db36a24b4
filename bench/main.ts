/**
 * `npm run bench`: per-call cost of torch-lora operations from Node next to the same
 * operations in PyTorch from Python (same libtorch build, so the ratio is binding overhead).
 * Options: --quick (fewer batches), --filter <substring>.
 */
import { native } from "../lib/binding";
import { allCases } from "./cases";
import { measure } from "./measure";
import { measurePython, torchVersion } from "./python";
import { ReportRow, formatTable, writeResults } from "./report";

function main(): void {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick");
  const filterAt = args.indexOf("--filter");
  const filter = filterAt >= 0 ? args[filterAt + 1] ?? "" : "";
  const options = { warmupBatches: 3, batches: quick ? 5 : 15, callsPerBatch: quick ? 5_000 : 20_000 };
  const cases = allCases.filter((c) => c.name.includes(filter));

  const rows: ReportRow[] = cases.map((c) => ({ name: c.name, js: measure(c.js(), options), python: null }));

  const torch = torchVersion();
  if (torch.version) {
    const py = measurePython(cases, options);
    for (const row of rows) row.python = py[row.name] ?? null;
  } else {
    console.log(`note: PyTorch comparison skipped (/usr/bin/python3 cannot import torch: ${torch.reason ?? "unknown"})`);
  }

  console.log(`torch-lora bench: median per-call cost over ${options.batches} batches of ${options.callsPerBatch} calls after ${options.warmupBatches} warm-up batches`);
  console.log(formatTable(rows));
  const file = writeResults(rows, { torch: torch.version, libtorch: native.buildInfo().torchVersion, options });
  console.log(`results written to ${file}`);
}

main();
