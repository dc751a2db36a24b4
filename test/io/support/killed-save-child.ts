/**
 * Child process of the crash test: saves a large state dict over an existing file and, after a
 * given number of tensors have been written, reports "halfway" and blocks, so the parent can
 * SIGKILL it at a known point in the middle of the write.
 */
import * as fs from "fs";
import { Tensor, full } from "../../../lib";
import { saveSafetensorsSync } from "../../../lib/io";

const [file, countArg, stopArg] = process.argv.slice(2);
const count = Number(countArg);
const stopAt = Number(stopArg);
const tensors: Record<string, Tensor> = {};
for (let i = 0; i < count; i++) tensors[`layer.${String(i).padStart(3, "0")}.weight`] = full([1024, 1024], i + 0.5);

const original = Tensor.prototype.toBytes;
let calls = 0;
Tensor.prototype.toBytes = function toBytesThenMaybeBlock(this: Tensor): Buffer {
  if (++calls === stopAt) {
    fs.writeSync(1, "halfway\n");
    // Sleep without returning, holding the half-written temporary file open.
    const cell = new Int32Array(new SharedArrayBuffer(4));
    for (;;) Atomics.wait(cell, 0, 0, 60_000);
  }
  return original.call(this);
};
saveSafetensorsSync(file, tensors, { run: "new" });
fs.writeSync(1, "finished\n");
