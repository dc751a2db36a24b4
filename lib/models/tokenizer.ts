/**
 * Tokenizers in Hugging Face's layout: a model folder's `tokenizer.json` (the `tokenizers`
 * library's serialization: normalizer, pre-tokenizer, BPE/WordPiece/Unigram model, post-processor,
 * decoder, added tokens), with the special tokens named in `tokenizer_config.json` and
 * `special_tokens_map.json`. The algorithms run in `@huggingface/tokenizers` (pure JavaScript, no
 * dependencies, no native build); this file reads the folder, resolves the special tokens and
 * gives the API the rest of the library speaks (camelCase, number[] or int64 Tensors).
 */
import * as fs from "fs";
import * as path from "path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { FormatError, describe } from "../errors";
import { excessNestingOffset, MAX_JSON_DEPTH } from "../io/json-depth";
import { openRegularFileSync, readTextFileSync } from "../io/regular-file";
import { Tensor, tensor } from "../tensor";

/** Largest `tokenizer.json` read: real ones are up to a few tens of MiB (large vocabularies). */
const MAX_TOKENIZER_BYTES = 256 << 20;

/** The tokenizer_config.json field with which transformers 5 applies the legacy space clean-up to a BPE model's decodes. */
const FORCE_BPE_CLEAN_UP = "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output";

/** The special-token roles read from the config files, as transformers names them. */
const SPECIAL_ROLES = ["bos_token", "eos_token", "unk_token", "pad_token"] as const;
type SpecialRole = (typeof SPECIAL_ROLES)[number];

/** Options of {@link PretrainedTokenizer.encode}. */
export interface EncodeOptions {
  /** Add the special tokens of the post-processor (Llama's `<s>`, BERT's `[CLS]`…`[SEP]`). Default true, as transformers. */
  addSpecialTokens?: boolean;
}

/** Options of {@link PretrainedTokenizer.decode}. */
export interface DecodeOptions {
  /** Leave out special tokens (`<s>`, `</s>`, `<|endoftext|>`…). Default false, as transformers. */
  skipSpecialTokens?: boolean;
  /**
   * Remove the space before punctuation and contractions (`" ,"` → `","`, `" 's"` → `"'s"`). Default: the config's
   * `clean_up_tokenization_spaces`, else false; for a BPE model, as in transformers 5, only when the config also sets
   * `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output`. Given here, it applies to every model.
   */
  cleanUpTokenizationSpaces?: boolean;
}

/** Options of {@link PretrainedTokenizer.encodeBatch}. */
export interface EncodeBatchOptions extends EncodeOptions {
  /**
   * Where the padding goes: "left" for generation (every row's last token is real, as
   * transformers users set `padding_side="left"`), "right" for training. Default: the config's
   * `padding_side`, else "right", as transformers.
   */
  paddingSide?: "left" | "right";
}

/** A padded batch: ids and the mask of real tokens, both (B, T) int64. */
export interface BatchEncoding {
  inputIds: Tensor;
  /** 1 where `inputIds` holds a token of the text, 0 on padding. */
  attentionMask: Tensor;
}

/** A special token: its text and its id. */
export interface SpecialToken {
  content: string;
  id: number;
}

/**
 * A tokenizer loaded from Hugging Face files. Text in, token ids out, and back; the special
 * tokens' ids for generation and padding.
 */
export class PretrainedTokenizer {
  readonly #inner: HfTokenizer;
  readonly #special: Record<SpecialRole, SpecialToken | null>;
  readonly #paddingSide: "left" | "right";
  /** The size of the model's own vocabulary table, without the added tokens it does not list (transformers' `tokenizer.vocab_size`). */
  readonly vocabSize: number;
  /** Every id the tokenizer can produce, added tokens included (transformers' `len(tokenizer)`): at most the model's embedding rows. */
  readonly size: number;

  /**
   * Builds a tokenizer from the parsed `tokenizer.json` and the merged tokenizer config
   * (`tokenizer_config.json` overlaid with `special_tokens_map.json`). `source` names them in errors.
   */
  constructor(tokenizerJson: object, config: Record<string, unknown> = {}, source = "tokenizer.json") {
    if (tokenizerJson === null || typeof tokenizerJson !== "object" || Array.isArray(tokenizerJson)) {
      throw new TypeError(`PretrainedTokenizer: tokenizerJson: expected the parsed tokenizer.json object, got ${describe(tokenizerJson)}`);
    }
    if (config === null || typeof config !== "object" || Array.isArray(config)) {
      throw new TypeError(`PretrainedTokenizer: config: expected the parsed tokenizer_config.json object, got ${describe(config)}`);
    }
    const model = (tokenizerJson as { model?: unknown }).model;
    if (model === null || typeof model !== "object") throw new FormatError(`${source}: no "model" object (the tokenizer's vocabulary and algorithm)`);
    // transformers (≥ 4.45) leaves decoded spaces alone unless the config asks for the legacy
    // clean-up (" ," → ","); the JS library would clean up by default, so the default is set here.
    const asked = config.clean_up_tokenization_spaces ?? false;
    if (typeof asked !== "boolean") throw new FormatError(`tokenizer config: clean_up_tokenization_spaces: expected a boolean, got ${describe(asked)}`);
    // transformers 5 ignores that request for a BPE model (the clean-up was written for WordPiece and
    // changes text a BPE spells exactly; Llama 3's config asks for it) unless the config insists.
    const forced = config[FORCE_BPE_CLEAN_UP] ?? false;
    if (typeof forced !== "boolean") throw new FormatError(`tokenizer config: ${FORCE_BPE_CLEAN_UP}: expected a boolean, got ${describe(forced)}`);
    const { type, merges } = model as { type?: unknown; merges?: unknown };
    const bpe = type === "BPE" || (type === undefined && merges !== undefined);
    const cleanUp = asked && (!bpe || forced);
    try {
      this.#inner = new HfTokenizer(tokenizerJson, { ...config, clean_up_tokenization_spaces: cleanUp });
    } catch (err) {
      throw new FormatError(`${source}: cannot build the tokenizer: ${(err as Error).message}`);
    }
    // The model's own table (BPE/WordPiece: token → id; Unigram: [piece, score] rows), added
    // tokens that it also lists included, as the Rust library's get_vocab_size(false) counts.
    const table = (model as { vocab?: unknown }).vocab;
    this.vocabSize = Array.isArray(table) ? table.length : table && typeof table === "object" ? Object.keys(table).length : this.#inner.get_vocab(false).size;
    let maxId = -1;
    for (const id of this.#inner.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.size = maxId + 1;
    const side = config.padding_side ?? "right";
    if (side !== "left" && side !== "right") throw new FormatError(`tokenizer config: padding_side: expected "left" or "right", got ${describe(side)}`);
    this.#paddingSide = side;
    this.#special = Object.fromEntries(SPECIAL_ROLES.map((role) => [role, this.#resolve(role, config[role], source)])) as Record<
      SpecialRole,
      SpecialToken | null
    >;
  }

  /** The id of a special token named in the config, or null when the config names none. */
  #resolve(role: SpecialRole, value: unknown, source: string): SpecialToken | null {
    if (value === undefined || value === null) return null;
    // transformers writes a token as a string or as an AddedToken dict with its text in "content".
    const content = typeof value === "string" ? value : (value as { content?: unknown }).content;
    if (typeof content !== "string")
      throw new FormatError(`tokenizer config: ${role}: expected a string or an object with a string "content", got ${describe(value)}`);
    const id = this.#inner.token_to_id(content);
    if (id === undefined) throw new FormatError(`tokenizer config: ${role} ${JSON.stringify(content)} is not in the vocabulary of ${source}`);
    return { content, id };
  }

  /** The beginning-of-sequence token (Llama's `<s>`), or null. */
  get bosToken(): SpecialToken | null {
    return this.#special.bos_token;
  }
  /** The end-of-sequence token (GPT-2's `<|endoftext|>`, Llama's `</s>`), or null. */
  get eosToken(): SpecialToken | null {
    return this.#special.eos_token;
  }
  /** The padding token, or null (GPT-2 and Llama name none: pass `eosTokenId` to pad). */
  get padToken(): SpecialToken | null {
    return this.#special.pad_token;
  }
  /** The unknown-text token, or null. */
  get unkToken(): SpecialToken | null {
    return this.#special.unk_token;
  }
  /** The id of {@link bosToken}, or null. */
  get bosTokenId(): number | null {
    return this.#special.bos_token?.id ?? null;
  }
  /** The id of {@link eosToken}, or null. */
  get eosTokenId(): number | null {
    return this.#special.eos_token?.id ?? null;
  }
  /** The id of {@link padToken}, or null. */
  get padTokenId(): number | null {
    return this.#special.pad_token?.id ?? null;
  }

  /** Token ids of `text`; special tokens written in the text (`<|endoftext|>`) are recognised as such. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new TypeError(`encode: text: expected a string, got ${describe(text)}`);
    const addSpecialTokens = options.addSpecialTokens ?? true;
    if (typeof addSpecialTokens !== "boolean") throw new TypeError(`encode: addSpecialTokens: expected a boolean, got ${describe(addSpecialTokens)}`);
    return this.#inner.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * Encodes several texts into one padded batch, as transformers' `tokenizer(texts,
   * padding=True, return_tensors="pt")`: rows shorter than the longest are filled with the pad
   * token (`padTokenId`, else `eosTokenId`, as generation pipelines do for GPT-2 and Llama) on
   * `paddingSide`, and `attentionMask` marks the real tokens.
   *
   * @throws RangeError when rows need padding and the tokenizer has neither a pad nor an eos token.
   */
  encodeBatch(texts: readonly string[], options: EncodeBatchOptions = {}): BatchEncoding {
    if (!Array.isArray(texts) || texts.length === 0) throw new TypeError(`encodeBatch: texts: expected a non-empty array of strings, got ${describe(texts)}`);
    const side = options.paddingSide ?? this.#paddingSide;
    if (side !== "left" && side !== "right") throw new TypeError(`encodeBatch: paddingSide: expected "left" or "right", got ${describe(side)}`);
    const rows = texts.map((text, i) => {
      if (typeof text !== "string") throw new TypeError(`encodeBatch: texts[${i}]: expected a string, got ${describe(text)}`);
      return this.encode(text, options);
    });
    const width = Math.max(...rows.map((r) => r.length));
    const padId = this.padTokenId ?? this.eosTokenId;
    if (padId === null && rows.some((r) => r.length < width)) {
      throw new RangeError(
        "encodeBatch: the texts encode to different lengths and the tokenizer has no pad_token or eos_token to pad with; give texts of equal length or a tokenizer_config.json naming pad_token",
      );
    }
    const ids = new BigInt64Array(rows.length * width);
    const mask = new BigInt64Array(rows.length * width);
    rows.forEach((row, b) => {
      const start = b * width + (side === "left" ? width - row.length : 0);
      for (let j = 0; j < width; j++) ids[b * width + j] = BigInt(padId ?? 0);
      row.forEach((id, j) => {
        ids[start + j] = BigInt(id);
        mask[start + j] = 1n;
      });
    });
    return { inputIds: tensor(ids, { shape: [rows.length, width] }), attentionMask: tensor(mask, { shape: [rows.length, width] }) };
  }

  /** The token strings of `text` (`["hello", "Ġworld"]`), without special tokens added. */
  tokenize(text: string): string[] {
    if (typeof text !== "string") throw new TypeError(`tokenize: text: expected a string, got ${describe(text)}`);
    return this.#inner.tokenize(text);
  }

  /** The text of token ids: a number[] or a 1-D integer Tensor (a row of `generate`'s output). */
  decode(ids: readonly number[] | Tensor, options: DecodeOptions = {}): string {
    const list = this.#checkIds(ids);
    const skipSpecialTokens = options.skipSpecialTokens ?? false;
    if (typeof skipSpecialTokens !== "boolean") throw new TypeError(`decode: skipSpecialTokens: expected a boolean, got ${describe(skipSpecialTokens)}`);
    const cleanUp = options.cleanUpTokenizationSpaces;
    if (cleanUp !== undefined && typeof cleanUp !== "boolean")
      throw new TypeError(`decode: cleanUpTokenizationSpaces: expected a boolean, got ${describe(cleanUp)}`);
    // No ids decode to the empty text, as in transformers (the library refuses an empty list).
    if (list.length === 0) return "";
    return this.#inner.decode(list, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: cleanUp ?? null });
  }

  /** The id of a token string, or undefined when it is not in the vocabulary. */
  tokenToId(token: string): number | undefined {
    if (typeof token !== "string") throw new TypeError(`tokenToId: token: expected a string, got ${describe(token)}`);
    return this.#inner.token_to_id(token);
  }

  /** The token string of an id, or undefined when no token has it. */
  idToToken(id: number): string | undefined {
    if (!Number.isInteger(id)) throw new TypeError(`idToToken: id: expected an integer, got ${describe(id)}`);
    return this.#inner.id_to_token(id);
  }

  #checkIds(ids: readonly number[] | Tensor): number[] {
    let list: number[];
    if (ids instanceof Tensor) {
      if (ids.ndim !== 1 || !["int64", "int32", "uint8"].includes(ids.dtype)) {
        throw new TypeError(`decode: ids: expected a 1-D integer Tensor, got a ${ids.dtype} Tensor of shape [${ids.shape.join(", ")}]`);
      }
      list = ids.toList().map(Number);
    } else if (Array.isArray(ids)) {
      list = ids as number[];
    } else {
      throw new TypeError(`decode: ids: expected an array of token ids or a 1-D integer Tensor, got ${describe(ids)}`);
    }
    const bad = list.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= this.size);
    if (bad >= 0) throw new RangeError(`decode: ids[${bad}]: expected an integer token id in [0, ${this.size}), got ${describe(list[bad])}`);
    return list;
  }
}

/** Parses a JSON file of `file`'s text, refusing what is not a JSON object with a FormatError. */
function parseJsonObject(file: string, text: string): Record<string, unknown> {
  const deep = excessNestingOffset(text, MAX_JSON_DEPTH);
  if (deep >= 0) throw new FormatError(`${file}: JSON nested deeper than ${MAX_JSON_DEPTH} levels (at character ${deep})`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new FormatError(`${file}: expected a JSON object, got ${describe(value)}`);
  return value as Record<string, unknown>;
}

/** Reads `tokenizer.json`, which may be larger than a config (a 250k-token vocabulary is ~30 MiB). */
function readTokenizerJson(file: string): string {
  const fd = openRegularFileSync(file);
  try {
    const size = fs.fstatSync(fd).size;
    if (size > MAX_TOKENIZER_BYTES) throw new FormatError(`${file}: ${size} bytes, more than the ${MAX_TOKENIZER_BYTES} a tokenizer.json may have`);
    return fs.readFileSync(fd, "utf8");
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Loads the tokenizer of a Hugging Face model folder: `tokenizer.json`, plus the special tokens
 * of `tokenizer_config.json` and `special_tokens_map.json` when present (resolved as transformers'
 * `from_pretrained` does, see {@link mergeSpecialTokens}).
 *
 * @example
 * const tok = loadTokenizer("./gpt2");
 * const ids = tok.encode("Hello world"); // [15496, 995]
 * tok.decode(ids); // "Hello world"
 * @throws FormatError when `tokenizer.json` is missing or malformed, or a special token is not in its vocabulary.
 */
export function loadTokenizer(dir: string): PretrainedTokenizer {
  if (typeof dir !== "string" || dir === "") throw new TypeError(`loadTokenizer: dir: expected a folder path, got ${describe(dir)}`);
  const file = path.join(dir, "tokenizer.json");
  if (!fs.existsSync(file)) {
    const why = fs.existsSync(path.join(dir, "tokenizer.model"))
      ? " (it has only a SentencePiece tokenizer.model: convert it to tokenizer.json with transformers' AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
      : fs.existsSync(path.join(dir, "vocab.json"))
        ? " (it has only the slow tokenizer's vocab.json/merges.txt: convert them with transformers' AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
        : "";
    throw new FormatError(`loadTokenizer: ${dir} has no tokenizer.json${why}`);
  }
  const tokenizerJson = parseJsonObject(file, readTokenizerJson(file));
  const readOptional = (name: string) => {
    const extra = path.join(dir, name);
    return fs.existsSync(extra) ? parseJsonObject(extra, readTextFileSync(extra)) : {};
  };
  return new PretrainedTokenizer(tokenizerJson, mergeSpecialTokens(readOptional("tokenizer_config.json"), readOptional("special_tokens_map.json")), file);
}

/**
 * The tokenizer config with the special tokens of `special_tokens_map.json`, as transformers'
 * `from_pretrained` resolves them: a config written with `added_tokens_decoder` (transformers
 * ≥ 4.34) is authoritative; an older one is overridden by the map. A role only one file names
 * is taken from that file.
 */
function mergeSpecialTokens(config: Record<string, unknown>, map: Record<string, unknown>): Record<string, unknown> {
  const merged = { ...config };
  const configWins = "added_tokens_decoder" in config;
  for (const role of SPECIAL_ROLES) {
    if (map[role] === undefined || map[role] === null) continue;
    if (!configWins || merged[role] === undefined || merged[role] === null) merged[role] = map[role];
  }
  return merged;
}
