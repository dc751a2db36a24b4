/** Which safetensors files hold a transformers checkpoint folder's weights. */
import * as fs from "fs";
import * as path from "path";
import { FormatError, describe } from "../errors";
import { MAX_JSON_DEPTH, excessNestingOffset } from "../io/json-depth";
import { WEIGHTS_INDEX_NAME, WEIGHTS_NAME } from "./save";

/** Reads a JSON file, naming it in every error. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FormatError(`${file}: cannot be read (${code ?? (err as Error).message})`);
  }
  const deep = excessNestingOffset(text);
  if (deep >= 0) throw new FormatError(`${file}: nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep (at character ${deep})`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

/**
 * The weight files of `dir`: `model.safetensors`, else the shards `model.safetensors.index.json`
 * lists (file names in the same folder), in order of first appearance.
 *
 * @throws FormatError when there is neither, or the index is malformed.
 */
export function checkpointFiles(dir: string): { files: string[]; index: string | null } {
  const single = path.join(dir, WEIGHTS_NAME);
  const index = path.join(dir, WEIGHTS_INDEX_NAME);
  if (fs.existsSync(single)) return { files: [single], index: null };
  if (!fs.existsSync(index)) {
    throw new FormatError(
      `${dir}: holds neither ${WEIGHTS_NAME} nor ${WEIGHTS_INDEX_NAME} (only safetensors checkpoints are read; convert a pytorch_model.bin with transformers' save_pretrained(safe_serialization=True))`,
    );
  }
  const json = readJsonFile(index) as { weight_map?: unknown } | null;
  const map = json?.weight_map;
  if (map === null || map === undefined || typeof map !== "object" || Array.isArray(map))
    throw new FormatError(`${index}: expected an object with a "weight_map" of tensor names to shard files`);
  const names = Object.values(map as Record<string, unknown>);
  const bad = names.find((n) => typeof n !== "string" || n.includes("/") || n.includes("\\") || n.startsWith("."));
  if (bad !== undefined) throw new FormatError(`${index}: weight_map: expected shard file names in the same folder, got ${describe(bad)}`);
  return { files: [...new Set(names as string[])].map((n) => path.join(dir, n)), index };
}
