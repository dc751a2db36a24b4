/** Every benchmark case, in report order. Add a module under cases/ and list it here. */
import { BenchCase } from "../types";
import { tinyOps } from "./tiny-ops";

export const allCases: BenchCase[] = [...tinyOps];
