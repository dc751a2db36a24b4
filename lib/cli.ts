#!/usr/bin/env node
/**
 * The `torch-lora` command line: `merge` folds a PEFT adapter into base weights, `inspect`
 * lists what a safetensors file or an adapter directory holds. Exit codes: 0 success, 1 a user
 * error (bad usage, missing or mismatched files, unsupported config), 2 an internal error.
 *
 * The commands' modules (and with them libtorch) load only when a command runs, so `--help`
 * answers at once.
 */
import { Command, CommanderError, Option } from "commander";
import { EXIT_INTERNAL, EXIT_OK, EXIT_USER, exitCodeFor } from "./cli/errors";
import { addLaunchCommand } from "./cli/launch";

/** The package version, from the package.json above this file (lib/ in source, dist/lib/ when built). */
function version(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- the manifest's place differs in lib/ and dist/lib/
      const pkg = require(rel) as { name?: string; version?: string };
      if (pkg.name === "torch-lora" && pkg.version) return pkg.version;
    } catch {
      // not at this level
    }
  }
  return "unknown";
}

/** Builds the command tree; exported for tests that drive it in process. */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name("torch-lora")
    .description("LoRA adapters in Hugging Face PEFT's layout: merge them into base weights, inspect files.")
    .version(version())
    .exitOverride()
    .showSuggestionAfterError()
    .allowExcessArguments(false);

  program
    .command("merge")
    .summary("merge a PEFT LoRA adapter into base weights")
    .description(
      "Merge a PEFT LoRA adapter into a base safetensors file, from the tensor names alone.\n\n" +
        "For each adapted module path p, <p>.weight gets W += s·B·A (Linear; transposed with fan_in_fan_out) " +
        "or W += s·(B·A)ᵀ (embedding), with s = lora_alpha/r (lora_alpha/√r with use_rslora; rank_pattern and " +
        "alpha_pattern applied per module). fp16/bf16 weights are merged in fp32 and rounded once.\n\n" +
        "Base keys may be the adapter's module paths as they are, or carry a base_model.model. or model. prefix " +
        "(or lack the adapter's model. prefix): the first of these styles that finds every module is used for the whole file.\n\n" +
        "Whether a weight is stored (out, in) like nn.Linear or (in, out) like transformers' Conv1D is read from its shape; " +
        "for a square weight, from --conv1d / --no-conv1d, else from the model_type in a config.json beside the base file " +
        "(gpt2: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj are Conv1D). The adapter's fan_in_fan_out is not trusted " +
        "(PEFT decides per layer); when the layout cannot be known, the merge is refused.",
    )
    .requiredOption(
      "--base <file>",
      "base model weights (.safetensors), or a transformers checkpoint folder (config.json + model.safetensors or sharded, written back in the same layout into the folder --out)",
    )
    .requiredOption("--adapter <dir>", "adapter directory (adapter_config.json + adapter_model.safetensors)")
    .requiredOption("--out <file>", "where to write the merged weights (.safetensors, replaced atomically; a folder when --base is one)")
    .addOption(new Option("--dtype <dtype>", "cast the output's floating tensors (merged weights are rounded once)").choices(["f32", "f16", "bf16"]))
    .option("--safe", "refuse to write NaN or Inf produced by the merge or the cast", false)
    .option("--adapter-name <name>", "pick the subfolder <adapter>/<name> holding a non-default adapter")
    .option(
      "--conv1d <regex>",
      "modules whose weights are stored (in, out) like transformers' Conv1D (matched against the module path or its trailing part); others are nn.Linear",
    )
    .option("--no-conv1d", "every adapted layer is an nn.Linear, stored (out, in)")
    .option("--force", "allow --out to replace the base file", false)
    .allowExcessArguments(false)
    .action(async (opts) => {
      const { runMerge } = await import("./cli/merge");
      await runMerge(opts);
    });

  program
    .command("inspect")
    .summary("list a safetensors file's tensors or an adapter's modules")
    .description(
      "List the tensors of a .safetensors file (name, dtype, shape, bytes), or an adapter directory's config and modules (r, alpha, scale). Reads headers only.",
    )
    .argument("<path>", "a .safetensors file or an adapter directory")
    .option("--json", "print JSON instead of a table", false)
    .option("--adapter-name <name>", "pick the subfolder <path>/<name> holding a non-default adapter")
    .allowExcessArguments(false)
    .action(async (target: string, opts) => {
      const { runInspect } = await import("./cli/inspect");
      await runInspect(target, opts);
    });
  addLaunchCommand(program);
  return program;
}

/** Runs the command line with `argv` (node and script first) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    if (argv.length <= 2) {
      program.outputHelp({ error: true });
      return EXIT_USER;
    }
    await program.parseAsync(argv);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help / version text).
      return err.exitCode === 0 ? EXIT_OK : EXIT_USER;
    }
    const code = exitCodeFor(err);
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(
      code === EXIT_INTERNAL
        ? `torch-lora: internal error: ${err instanceof Error && process.env.TORCH_LORA_DEBUG ? err.stack : message}\n`
        : `torch-lora: ${message}\n`,
    );
    return code;
  }
}

if (require.main === module) {
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`torch-lora: internal error: ${String(err)}\n`);
      process.exitCode = EXIT_INTERNAL;
    },
  );
}
