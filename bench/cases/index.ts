/** Every benchmark case, in report order. Add a module under cases/ and list it here. */
import { BenchCase } from "../types";
import { gptCases } from "./gpt";
import { gpt2GenerateCases } from "./gpt2-generate";
import { gpt2LoraCases } from "./gpt2-lora";
import { loraEmbeddingCases } from "./lora-embedding";
import { loraLinearCases } from "./lora-linear";
import { mergeCases } from "./merge";
import { mixedAdapterCases } from "./mixed-adapters";
import { tinyOps } from "./tiny-ops";
import { trainStepCases } from "./train-step";
import { transformerCases } from "./transformer";

export const allCases: BenchCase[] = [
  ...tinyOps,
  ...loraLinearCases,
  ...loraEmbeddingCases,
  ...mergeCases,
  ...trainStepCases,
  ...transformerCases,
  ...mixedAdapterCases,
  ...gptCases,
  ...gpt2LoraCases,
  ...gpt2GenerateCases,
];
