/** A LoRA Linear holding a plain adapter and a DoRA adapter, for the tests of mixed merges and forwards. */
import { init, lora, manualSeed, nn, noGrad } from "../../../lib";

export const INIT = { initLoraWeights: true, embeddingInit: "a-normal", embeddingInitStd: 1 } as const;
export const PLAIN = { r: 2, alpha: 1, scale: 0.5, dropout: 0 };
export const DORA = { r: 2, alpha: 3, scale: 1.5, dropout: 0, useDora: true };

/**
 * A Linear `inFeatures` → `outFeatures` with plain adapter "p" and DoRA adapter "d", every factor
 * and magnitude random (B ~ N(0, 0.5²), m ~ U(0.5, 2)), the same for the same seed.
 */
export function mixedLayer(inFeatures: number, outFeatures: number, seed: number): lora.LoraLinear {
  manualSeed(seed);
  const layer = new lora.LoraLinear(new nn.Linear(inFeatures, outFeatures));
  layer.addAdapter("p", PLAIN, INIT);
  layer.addAdapter("d", DORA, INIT);
  noGrad(() => {
    for (const name of ["p", "d"]) init.normal_(layer.factors(name)[1], 0, 0.5);
    init.uniform_(layer.magnitude("d")!, 0.5, 2);
  });
  return layer;
}
