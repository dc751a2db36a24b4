/**
 * PEFT's `path_initial_model_for_weight_conversion`: saving a PiSSA or OLoRA adapter as a plain
 * LoRA adapter for the ORIGINAL base weights.
 *
 * PiSSA/OLoRA train on the residual W_res = W − s·B₀A₀. After training, W_res + s·B·A =
 * W + s·(B·A − B₀·A₀), and B·A − B₀·A₀ = [B, −B₀]·[A; A₀]: a rank-2r adapter over W. Its config
 * doubles r and lora_alpha (×√2 with rsLoRA) so the scaling stays s, doubles the rank and alpha
 * patterns, and records `init_lora_weights: true`. The initial factors A₀, B₀ come from the adapter
 * saved at step 0 (before training) in the given directory.
 */
import * as fs from "fs";
import * as path from "path";
import { ConfigError, FormatError, describe } from "../errors";
import { loadSafetensorsSync } from "../io";
import { Tensor, cat } from "../tensor";
import { ADAPTER_WEIGHTS_NAME } from "./peft-config";
import { parseSavedFactorKey } from "./peft-keys";

type Json = Record<string, unknown>;

/** Reads the step-0 adapter saved in `initialDir` (its adapter_model.safetensors). */
function readInitial(initialDir: unknown): { file: string; tensors: Record<string, Tensor> } {
  if (typeof initialDir !== "string" || initialDir.length === 0) {
    throw new TypeError(`pathInitialModelForWeightConversion: expected the directory of the adapter saved before training, got ${describe(initialDir)}`);
  }
  const file = path.join(initialDir, ADAPTER_WEIGHTS_NAME);
  if (!fs.existsSync(file)) {
    throw new FormatError(
      `pathInitialModelForWeightConversion: ${file} is missing (save the adapter right after injecting it, before training, into ${initialDir})`,
    );
  }
  return { file, tensors: loadSafetensorsSync(file) };
}

/**
 * Converts one adapter's saved tensors and config JSON (as {@link saveAdapter} plans them) into the
 * plain LoRA adapter for the original base. Throws, before anything is written, when the initial
 * adapter does not match key for key and shape for shape, or for rsLoRA with rank/alpha patterns
 * (PEFT refuses that combination too: the doubled alpha cannot keep every layer's scaling).
 */
export function convertToPlainLora(tensors: Map<string, Tensor>, json: Json, initialDir: string): { tensors: Map<string, Tensor>; json: Json } {
  const hasPatterns = Object.keys((json.rank_pattern as Json) ?? {}).length > 0 || Object.keys((json.alpha_pattern as Json) ?? {}).length > 0;
  if (json.use_rslora === true && hasPatterns) {
    throw new ConfigError(
      "pathInitialModelForWeightConversion: not supported for an adapter using rsLoRA together with rankPattern or alphaPattern (as in PEFT)",
    );
  }
  if (json.use_dora === true) {
    throw new ConfigError("pathInitialModelForWeightConversion: not supported for a DoRA adapter (its magnitude was fitted to the residual base)");
  }
  const initial = readInitial(initialDir);
  const out = new Map<string, Tensor>();
  const problems: string[] = [];
  for (const [key, t] of tensors) {
    const factor = parseSavedFactorKey(key)?.factor;
    if (!factor) {
      out.set(key, t);
      continue;
    }
    const t0 = initial.tensors[key];
    if (!t0) {
      problems.push(`${key} is missing`);
      continue;
    }
    if (t0.shape.join() !== t.shape.join()) {
      problems.push(`${key} has shape [${t0.shape.join(", ")}], the adapter [${t.shape.join(", ")}]`);
      continue;
    }
    const initialFactor = t0.to({ dtype: t.dtype, device: t.device });
    // A' = [A; A₀] (rows), B' = [B, −B₀] (columns): B'A' = BA − B₀A₀.
    out.set(key, factor === "A" ? cat([t, initialFactor], 0) : cat([t, initialFactor.neg()], 1));
  }
  if (problems.length) throw new FormatError(`${initial.file}: does not match the adapter being saved: ${problems.join("; ")}`);

  const doubled = (v: unknown): Json => Object.fromEntries(Object.entries((v as Json) ?? {}).map(([k, x]) => [k, 2 * (x as number)]));
  const converted: Json = {
    ...json,
    init_lora_weights: true,
    r: 2 * (json.r as number),
    lora_alpha: json.use_rslora === true ? Math.SQRT2 * (json.lora_alpha as number) : 2 * (json.lora_alpha as number),
    rank_pattern: doubled(json.rank_pattern),
    alpha_pattern: doubled(json.alpha_pattern),
  };
  return { tensors: out, json: converted };
}
