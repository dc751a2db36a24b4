/**
 * RoPE's configuration in a Llama-family config.json, and the scalings of its frequencies that
 * transformers implements for Llama and torch-lora implements too: "linear" (position
 * interpolation) and "llama3" (Llama 3.1's smoothed per-frequency scaling), both of which only
 * change the inverse frequencies. Older files give `rope_theta` and `rope_scaling`; transformers 5
 * writes both inside `rope_parameters`.
 */
import { ConfigError, describe } from "../errors";

type Json = Record<string, unknown>;

/** How the inverse frequencies are scaled: not at all, divided by `factor`, or Llama 3.1's way. */
export type RopeScaling =
  | { rope_type: "default" }
  | { rope_type: "linear"; factor: number }
  | { rope_type: "llama3"; factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number };

/** The RoPE base and scaling of a config. */
export interface RopeSettings {
  theta: number;
  scaling: RopeScaling;
}

const positiveNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v > 0;

/**
 * Reads RoPE's base and scaling from a config.json object: `rope_parameters` (transformers 5),
 * else `rope_scaling`, with the base from `rope_parameters.rope_theta`, else `rope_theta`
 * (`topLevelTheta`, already checked). A scaling type not implemented here, or two different bases,
 * is refused by name.
 */
export function ropeSettings(json: Json, topLevelTheta: number, where: string): RopeSettings {
  const fromParameters = json.rope_parameters !== undefined && json.rope_parameters !== null;
  const name = fromParameters ? "rope_parameters" : "rope_scaling";
  const raw = json[name];
  if (raw === undefined || raw === null) return { theta: topLevelTheta, scaling: { rope_type: "default" } };
  if (typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(`${where}.${name}: expected an object { rope_type, ... }, got ${describe(raw)}`);
  const p = raw as Json;
  const at = (field: string) => `${where}.${name}.${field}`;
  let theta = topLevelTheta;
  if (fromParameters && p.rope_theta !== undefined && p.rope_theta !== null) {
    if (!positiveNumber(p.rope_theta)) throw new ConfigError(`${at("rope_theta")}: expected a number > 0, got ${describe(p.rope_theta)}`);
    if (json.rope_theta !== undefined && json.rope_theta !== null && p.rope_theta !== topLevelTheta) {
      throw new ConfigError(`${at("rope_theta")}: ${p.rope_theta} differs from the file's rope_theta (${topLevelTheta}); which one applies is ambiguous`);
    }
    theta = p.rope_theta;
  }
  const kind = p.rope_type ?? p.type ?? "default";
  const number = (field: string, fallback?: unknown): number => {
    const v = p[field] ?? fallback;
    if (!positiveNumber(v)) throw new ConfigError(`${at(field)}: expected a number > 0 for RoPE scaling of type ${describe(kind)}, got ${describe(p[field])}`);
    return v;
  };
  switch (kind) {
    case "default":
      return { theta, scaling: { rope_type: "default" } };
    case "linear":
      return { theta, scaling: { rope_type: "linear", factor: number("factor") } };
    case "llama3": {
      const scaling = {
        rope_type: "llama3" as const,
        factor: number("factor"),
        low_freq_factor: number("low_freq_factor"),
        high_freq_factor: number("high_freq_factor"),
        // transformers falls back to the top-level fields when the scaling leaves it out.
        original_max_position_embeddings: number("original_max_position_embeddings", json.original_max_position_embeddings ?? json.max_position_embeddings),
      };
      if (scaling.high_freq_factor <= scaling.low_freq_factor) {
        throw new ConfigError(`${at("high_freq_factor")}: expected a number > low_freq_factor (${scaling.low_freq_factor}), got ${scaling.high_freq_factor}`);
      }
      return { theta, scaling };
    }
    default:
      throw new ConfigError(`${at("rope_type")}: RoPE scaling of type ${describe(kind)} is not implemented (only "default", "linear" and "llama3")`);
  }
}

/**
 * The inverse frequencies `1 / θ^(2i/D)` (as float32 values) scaled as `scaling` says, following
 * transformers' `_compute_linear_scaling_rope_parameters` and `_compute_llama3_parameters`: Llama
 * 3.1 keeps the high frequencies (wavelength below `original / high_freq_factor`), divides the low
 * ones (wavelength above `original / low_freq_factor`) by `factor`, and blends in between.
 */
export function scaleInverseFrequencies(invFreq: number[], scaling: RopeScaling): number[] {
  switch (scaling.rope_type) {
    case "default":
      return invFreq;
    case "linear":
      return invFreq.map((f) => f / scaling.factor);
    case "llama3": {
      const { factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: original } = scaling;
      return invFreq.map((f) => {
        const wavelength = (2 * Math.PI) / f;
        if (wavelength < original / high) return f;
        if (wavelength > original / low) return f / factor;
        const smooth = (original / wavelength - low) / (high - low);
        return ((1 - smooth) * f) / factor + smooth * f;
      });
    }
  }
}
