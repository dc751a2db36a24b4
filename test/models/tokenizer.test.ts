import * as fs from "fs";
import * as path from "path";
import { FormatError, tensor } from "../../lib";
import { PretrainedTokenizer, loadTokenizer } from "../../lib/models/tokenizer";
import { makeTempDir } from "../helpers/temp";

// Two tiny tokenizers written here in Hugging Face's tokenizer.json layout, with merges chosen so
// that the expected ids can be worked out by hand (the comments do it).

/** GPT-2's byte → printable-character table (bytes_to_unicode), in GPT-2's vocabulary order. */
function byteLevelAlphabet(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const chars: string[] = printable.map((b) => String.fromCharCode(b));
  let shifted = 0;
  for (let b = 0; b < 256; b++)
    if (!printable.includes(b)) {
      printable.push(b);
      chars.push(String.fromCharCode(256 + shifted++));
    }
  return chars; // chars[i] is the token of id i; ids 0..93 are "!".."~"
}

const GPT2_MERGES = ["Ġ w", "o r", "h e", "l l", "he ll", "hell o", "Ġw or", "Ġwor l", "Ġworl d"];

/** A GPT-2-style byte-level BPE: 256 byte tokens, 9 merges (ids 256..264), <|endoftext|> = 265. */
function gpt2Json(): object {
  const vocab: Record<string, number> = {};
  byteLevelAlphabet().forEach((c, i) => (vocab[c] = i));
  GPT2_MERGES.forEach((m, i) => (vocab[m.replace(" ", "")] = 256 + i));
  vocab["<|endoftext|>"] = 265;
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [{ id: 265, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: GPT2_MERGES,
    },
  };
}

const LLAMA_MERGES = ["▁ h", "e l", "▁h el", "l o", "▁hel lo", "▁ w", "o r", "▁w or", "l d", "▁wor ld"];

/**
 * A Llama-style (SentencePiece BPE) tokenizer: <unk> <s> </s> = 0 1 2, byte fallback <0x00>..<0xFF>
 * = 3..258, the characters ▁ h e l o w r d = 259..266, the 10 merges' results = 267..276.
 */
function llamaJson(): object {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  [..."▁helowrd"].forEach((c, i) => (vocab[c] = 259 + i));
  LLAMA_MERGES.forEach((m, i) => (vocab[m.replace(" ", "")] = 267 + i));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "▁" },
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: LLAMA_MERGES,
    },
  };
}

/** Writes `files` (name → JSON value or raw text) into a fresh folder. */
function folder(files: Record<string, unknown>): string {
  const dir = makeTempDir("tl-tok-");
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), typeof content === "string" ? content : JSON.stringify(content));
  dirs.push(dir);
  return dir;
}
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

describe("loadTokenizer: a GPT-2-style byte-level BPE", () => {
  const dir = folder({
    "tokenizer.json": gpt2Json(),
    "tokenizer_config.json": {
      bos_token: "<|endoftext|>",
      eos_token: "<|endoftext|>",
      unk_token: "<|endoftext|>",
      model_max_length: 1024,
      tokenizer_class: "GPT2Tokenizer",
    },
  });
  const tok = loadTokenizer(dir);

  test("encodes by the merges' ranks: 'hello' and ' world' each become one token", () => {
    // "hello": h e l l o → (h,e) rank 2 → he l l o → (l,l) 3 → he ll o → (he,ll) 4 → hell o → (hell,o) 5 → hello = 256+5.
    // " world": Ġ w o r l d → Ġw o r l d → Ġw or l d → Ġwor l d → Ġworl d → Ġworld = 256+8.
    expect(tok.encode("hello world")).toEqual([261, 264]);
    expect(tok.tokenize("hello world")).toEqual(["hello", "Ġworld"]);
    // Bytes without merges keep their own ids: "y" is byte 0x79 → id 0x79 - 0x21 = 88; "!" is id 0.
    expect(tok.encode("yo!")).toEqual([88, 78, 0]);
  });

  test("non-ASCII text goes through its UTF-8 bytes and decodes back", () => {
    // "é" is C3 A9: byte 0xC3 → id 94 + 12 + (0xC3 - 0xAE) = 127, byte 0xA9 → id 94 + (0xA9 - 0xA1) = 102.
    // "llo" after it: (l,l) rank 3 → ll (259), o = 78; h = 0x68 - 0x21 = 71.
    expect(tok.encode("héllo")).toEqual([71, 127, 102, 259, 78]);
    for (const text of ["héllo", "Hello, world! 123", "naïve café — ünïcødé ✓ 日本", "  two  spaces\nand a newline"]) {
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
  });

  test("special tokens: <|endoftext|> in the text is one id, the config's ids, skipSpecialTokens", () => {
    expect(tok.eosTokenId).toBe(265);
    expect(tok.bosTokenId).toBe(265);
    expect(tok.padTokenId).toBeNull();
    expect(tok.eosToken).toEqual({ content: "<|endoftext|>", id: 265 });
    // GPT-2's post-processor adds nothing, with or without addSpecialTokens.
    expect(tok.encode("hello<|endoftext|>")).toEqual([261, 265]);
    expect(tok.encode("hello", { addSpecialTokens: true })).toEqual([261]);
    expect(tok.decode([261, 264, 265])).toBe("hello world<|endoftext|>");
    expect(tok.decode([261, 264, 265], { skipSpecialTokens: true })).toBe("hello world");
    expect(tok.decode(tensor([261, 264], { dtype: "int64" }))).toBe("hello world");
    // No ids (the encoding of "", a generation of no new token) decode to "", as in transformers.
    expect(tok.encode("")).toEqual([]);
    expect(tok.decode([])).toBe("");
    expect(tok.decode(tensor([], { dtype: "int64" }), { skipSpecialTokens: true })).toBe("");
  });

  test("decode keeps spaces before punctuation unless clean_up_tokenization_spaces asks otherwise", () => {
    const text = "hello , world ! it 's";
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.decode(tok.encode(text), { cleanUpTokenizationSpaces: true })).toBe("hello, world! it's");
    // The config's request: a BPE model ignores it, as transformers 5 does, unless the config insists.
    const asked = loadTokenizer(folder({ "tokenizer.json": gpt2Json(), "tokenizer_config.json": { clean_up_tokenization_spaces: true } }));
    expect(asked.decode(asked.encode(text))).toBe(text);
    expect(asked.decode(asked.encode(text), { cleanUpTokenizationSpaces: true })).toBe("hello, world! it's");
    const forced = { clean_up_tokenization_spaces: true, clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: true };
    const legacy = loadTokenizer(folder({ "tokenizer.json": gpt2Json(), "tokenizer_config.json": forced }));
    expect(legacy.decode(legacy.encode(text))).toBe("hello, world! it's");
    expect(legacy.decode(legacy.encode(text), { cleanUpTokenizationSpaces: false })).toBe(text);
    // Another model (here a word-level one) follows the config's request.
    const words = {
      version: "1.0",
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: { type: "WhitespaceSplit" },
      post_processor: null,
      decoder: null,
      model: { type: "WordLevel", vocab: { hello: 0, ",": 1, world: 2, "!": 3, "[UNK]": 4 }, unk_token: "[UNK]" },
    };
    const wordLevel = loadTokenizer(folder({ "tokenizer.json": words, "tokenizer_config.json": { clean_up_tokenization_spaces: true } }));
    expect(wordLevel.encode("hello , world !")).toEqual([0, 1, 2, 3]);
    expect(wordLevel.decode([0, 1, 2, 3])).toBe("hello, world!");
    expect(new PretrainedTokenizer(words).decode([0, 1, 2, 3])).toBe("hello , world !");
    expect(() => new PretrainedTokenizer(gpt2Json(), { clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: 1 })).toThrow(
      /clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: expected a boolean, got 1/,
    );
    expect(() => loadTokenizer(folder({ "tokenizer.json": gpt2Json(), "tokenizer_config.json": { clean_up_tokenization_spaces: "yes" } }))).toThrow(
      /clean_up_tokenization_spaces: expected a boolean/,
    );
  });

  test("vocabSize counts the model's vocabulary, size every id", () => {
    expect(tok.vocabSize).toBe(266); // <|endoftext|> is in the BPE vocab as in GPT-2's vocab.json
    expect(tok.size).toBe(266);
    expect(tok.tokenToId("Ġworld")).toBe(264);
    expect(tok.idToToken(261)).toBe("hello");
  });
});

describe("loadTokenizer: a Llama-style SentencePiece BPE with byte fallback", () => {
  const dir = folder({
    "tokenizer.json": llamaJson(),
    "tokenizer_config.json": {
      add_bos_token: true,
      add_eos_token: false,
      bos_token: { __type: "AddedToken", content: "<s>", lstrip: false, normalized: false, rstrip: false, single_word: false },
      eos_token: "</s>",
      pad_token: null,
      unk_token: "<unk>",
    },
    // special_tokens_map.json overrides tokenizer_config.json where both name a role, as in transformers.
    "special_tokens_map.json": { bos_token: { content: "<s>" }, eos_token: { content: "</s>" }, unk_token: "<unk>", pad_token: "<unk>" },
  });
  const tok = loadTokenizer(dir);

  test("encodes the whole ▁-prefixed text by merge rank and adds <s>", () => {
    // "hello world" → "▁hello▁world"; merges by rank: ▁h, el, ▁hel, lo, ▁hello, ▁w, or, ▁wor, ld, ▁world.
    expect(tok.encode("hello world")).toEqual([1, 271, 276]);
    expect(tok.encode("hello world", { addSpecialTokens: false })).toEqual([271, 276]);
    expect(tok.tokenize("hello world")).toEqual(["▁hello", "▁world"]);
  });

  test("characters outside the vocabulary fall back to byte tokens and decode back", () => {
    // "hi" → ▁ h i → ▁h (267) then i, not in the vocabulary → <0x69> = 3 + 0x69 = 108.
    expect(tok.encode("hi", { addSpecialTokens: false })).toEqual([267, 108]);
    // "é" → ▁ é → ▁ (259), then its UTF-8 bytes C3 A9 → 3 + 0xC3 = 198, 3 + 0xA9 = 172.
    expect(tok.encode("é", { addSpecialTokens: false })).toEqual([259, 198, 172]);
    for (const text of ["hello world", "héllo wörld", "hi there"]) {
      expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text);
    }
  });

  test("special tokens from tokenizer_config.json and special_tokens_map.json", () => {
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenId).toBe(2);
    expect(tok.padTokenId).toBe(0); // only special_tokens_map.json names it
    expect(tok.unkToken).toEqual({ content: "<unk>", id: 0 });
    expect(tok.decode([1, 271, 276, 2])).toBe("<s> hello world</s>");
    expect(tok.decode([1, 271, 276, 2], { skipSpecialTokens: true })).toBe("hello world");
    expect(tok.vocabSize).toBe(277);
  });

  test("a config with added_tokens_decoder is authoritative over special_tokens_map.json; a token added past the model's vocabulary counts in size", () => {
    const json = llamaJson() as { added_tokens: object[] };
    json.added_tokens.push({ id: 277, content: "<pad>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    const modern = loadTokenizer(
      folder({
        "tokenizer.json": json,
        "tokenizer_config.json": { added_tokens_decoder: {}, bos_token: "<s>", eos_token: "</s>", pad_token: "<pad>" },
        "special_tokens_map.json": { eos_token: "<unk>", pad_token: "<unk>", unk_token: "<unk>" },
      }),
    );
    expect([modern.bosTokenId, modern.eosTokenId, modern.padTokenId, modern.unkToken?.id]).toEqual([1, 2, 277, 0]);
    expect(modern.vocabSize).toBe(277);
    expect(modern.size).toBe(278);
    expect(modern.encode("hello<pad>", { addSpecialTokens: false })).toEqual([271, 277]);
  });

  test("encodeBatch pads with the pad token on the chosen side and masks the padding", () => {
    // "hello world" → <s> ▁hello ▁world; "hi" → <s> ▁h <0x69>; "hello" → <s> ▁hello. Pad = <unk> (0).
    const right = tok.encodeBatch(["hello world", "hi", "hello"]);
    expect(right.inputIds.dtype).toBe("int64");
    expect(right.inputIds.shape).toEqual([3, 3]);
    expect(right.inputIds.toList().map(Number)).toEqual([1, 271, 276, 1, 267, 108, 1, 271, 0]);
    expect(right.attentionMask.toList().map(Number)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0]);
    const left = tok.encodeBatch(["hello", "hello world"], { paddingSide: "left", addSpecialTokens: false });
    expect(left.inputIds.toList().map(Number)).toEqual([0, 271, 271, 276]);
    expect(left.attentionMask.toList().map(Number)).toEqual([0, 1, 1, 1]);
    // padding_side in the config is the default; GPT-2 pads with eos when it names no pad token.
    const gpt2 = loadTokenizer(folder({ "tokenizer.json": gpt2Json(), "tokenizer_config.json": { eos_token: "<|endoftext|>", padding_side: "left" } }));
    expect(gpt2.encodeBatch(["hello world", "yo"]).inputIds.toList().map(Number)).toEqual([261, 264, 88, 78]); // equal lengths: no padding
    expect(gpt2.encodeBatch(["hello world!", "yo"]).inputIds.toList().map(Number)).toEqual([261, 264, 0, 265, 88, 78]);
    const bare = new PretrainedTokenizer(gpt2Json());
    expect(() => bare.encodeBatch(["hello world!", "yo"])).toThrow(/no pad_token or eos_token to pad with/);
    expect(bare.encodeBatch(["hi", "yo"]).inputIds.toList().map(Number)).toEqual([71, 72, 88, 78]); // no padding needed
    expect(() => tok.encodeBatch([])).toThrow(/texts: expected a non-empty array/);
    expect(() => tok.encodeBatch(["a", 3 as unknown as string])).toThrow(/texts\[1\]: expected a string/);
    expect(() => tok.encodeBatch(["a"], { paddingSide: "up" as "left" })).toThrow(/paddingSide: expected "left" or "right"/);
  });

  test("without config files there are no special-token ids", () => {
    const bare = loadTokenizer(folder({ "tokenizer.json": llamaJson() }));
    expect([bare.bosTokenId, bare.eosTokenId, bare.padTokenId]).toEqual([null, null, null]);
    expect(bare.encode("hello")).toEqual([1, 271]); // the post-processor still adds <s>
  });
});

describe("loadTokenizer: bad input", () => {
  test("a folder without tokenizer.json says what it has instead", () => {
    expect(() => loadTokenizer(folder({}))).toThrow(FormatError);
    expect(() => loadTokenizer(folder({ "vocab.json": {}, "merges.txt": "" }))).toThrow(
      /has no tokenizer\.json \(it has only the slow tokenizer's vocab\.json/,
    );
    expect(() => loadTokenizer(folder({ "tokenizer.model": "x" }))).toThrow(/SentencePiece tokenizer\.model/);
    expect(() => loadTokenizer("" as string)).toThrow(/loadTokenizer: dir: expected a folder path/);
  });

  test("malformed files and unknown special tokens are FormatErrors naming the file", () => {
    expect(() => loadTokenizer(folder({ "tokenizer.json": "{ not json" }))).toThrow(/tokenizer\.json: not valid JSON/);
    expect(() => loadTokenizer(folder({ "tokenizer.json": "[1, 2]" }))).toThrow(/tokenizer\.json: expected a JSON object/);
    expect(() => loadTokenizer(folder({ "tokenizer.json": { version: "1.0" } }))).toThrow(/no "model" object/);
    expect(() => loadTokenizer(folder({ "tokenizer.json": gpt2Json(), "tokenizer_config.json": { eos_token: "</s>" } }))).toThrow(
      /eos_token "<\/s>" is not in the vocabulary of .*tokenizer\.json/,
    );
    expect(() => loadTokenizer(folder({ "tokenizer.json": gpt2Json(), "tokenizer_config.json": { eos_token: 5 } }))).toThrow(FormatError);
  });

  test("encode and decode name the argument they refuse", () => {
    const tok = new PretrainedTokenizer(gpt2Json());
    expect(() => new PretrainedTokenizer(gpt2Json(), null as unknown as Record<string, unknown>)).toThrow(
      /config: expected the parsed tokenizer_config\.json object, got null/,
    );
    expect(() => new PretrainedTokenizer("{}" as unknown as object)).toThrow(/tokenizerJson: expected the parsed tokenizer\.json object/);
    expect(() => tok.encode(5 as unknown as string)).toThrow(/encode: text: expected a string, got 5/);
    expect(() => tok.encode("x", { addSpecialTokens: "yes" as unknown as boolean })).toThrow(/addSpecialTokens: expected a boolean/);
    expect(() => tok.decode([1, 266])).toThrow(/decode: ids\[1\]: expected an integer token id in \[0, 266\), got 266/);
    expect(() => tok.decode([1.5])).toThrow(RangeError);
    expect(() => tok.decode(tensor([[1, 2]], { dtype: "int64" }))).toThrow(/1-D integer Tensor, got a int64 Tensor of shape \[1, 2\]/);
    expect(() => tok.decode(tensor([1.0]))).toThrow(/1-D integer Tensor, got a float32/);
  });
});
