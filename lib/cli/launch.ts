/**
 * `torch-lora launch`: torchrun for Node scripts. Starts --nproc-per-node processes running a
 * script with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and
 * MASTER_PORT set; if one rank fails, the others are stopped and the command exits with its code.
 */
import { Command } from "commander";
import { UsageError } from "./errors";

/** An integer option value, or a UsageError naming the option. */
function integer(flag: string, min: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min) throw new UsageError(`${flag}: expected an integer >= ${min}, got ${JSON.stringify(value)}`);
    return Number(value);
  };
}

/** Adds the `launch` command to the program. */
export function addLaunchCommand(program: Command): void {
  // Options after the script belong to the script, not to torch-lora.
  program.enablePositionalOptions();
  program
    .command("launch")
    .summary("run a training script in several processes (data parallel, like torchrun)")
    .description(
      "Start --nproc-per-node processes of `node <script> [args...]` on this machine, with torchrun's environment: " +
        "RANK, WORLD_SIZE (= nnodes × nproc-per-node), LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK (= node rank), MASTER_ADDR, MASTER_PORT. " +
        "The script calls dist.initProcessGroup() (env://) and trains on device dist.localDevice() (cuda:<LOCAL_RANK> on a GPU machine). " +
        "With more than one process, each gets OMP_NUM_THREADS=1 unless it is set. If a rank exits with an error or is killed, " +
        "the other ranks get SIGTERM (SIGKILL 5 s later) and the command exits with that rank's code. " +
        "On several machines, run the same command on each with --nnodes, its own --node-rank and node 0's --master-addr.",
    )
    .requiredOption("--nproc-per-node <n>", "processes on this machine (one per GPU on a GPU machine)", integer("--nproc-per-node", 1))
    .option("--nnodes <m>", "machines in the job", integer("--nnodes", 1), 1)
    .option("--node-rank <k>", "this machine's index in [0, nnodes); node 0 hosts rank 0", integer("--node-rank", 0), 0)
    .option("--master-addr <addr>", "address of node 0, reachable from every node", "127.0.0.1")
    .option("--master-port <port>", "a free TCP port on node 0", integer("--master-port", 1), 29500)
    .argument("<script>", "the script every process runs (node <script> [args...])")
    .argument("[args...]", "arguments passed to the script")
    .passThroughOptions()
    .action(
      async (script: string, args: string[], opts: { nprocPerNode: number; nnodes: number; nodeRank: number; masterAddr: string; masterPort: number }) => {
        const { launch } = await import("../dist/launch");
        const result = await launch({ ...opts, script, args });
        if (result.exitCode !== 0) {
          process.stderr.write(`torch-lora launch: failed: ${result.reason}\n`);
          process.exit(result.exitCode);
        }
      },
    );
}
