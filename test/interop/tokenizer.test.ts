/**
 * Tokenizers cross between torch-lora and Hugging Face's own libraries: the Python `tokenizers`
 * library trains three tokenizers (GPT-2's byte-level BPE; Llama 2's SentencePiece BPE with byte
 * fallback; T5's Unigram behind NFKC and the Metaspace pre-tokenizer) on a corpus generated here,
 * transformers saves each as a checkpoint's folder, and `models.loadTokenizer` reads that folder.
 * Text by text, our ids, tokens, decodes and padded batches must equal those of transformers'
 * `AutoTokenizer.from_pretrained` of the same folder.
 */
import * as fs from "fs";
import * as path from "path";
import { models } from "../../lib";
import { makeTempDir } from "../helpers/temp";
import { describeHf, hf } from "./support/hf";

/** A deterministic generator of numbers in [0, 1) (mulberry32), so that the corpus is the same on every run. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ASCII =
  "the a of and to in is it that was for on are with as his they be at one have this from or had by word but what some we can out other were all there when up use your how said an each she which do their time if will way about many then them write would like so these her long make thing see him two has look more day could go come did number sound no most people my over know water than call first who may down side been now find".split(
    " ",
  );
const ACCENTED = ["café", "naïve", "über", "façade", "señor", "Ångström", "crème", "brûlée", "Zürich", "résumé", "São", "Paulo", "Łódź", "ελληνικά", "русский"];
const CJK = ["日本語", "中文", "漢字", "東京", "한국어", "テスト", "ひらがな", "北京大学", "カタカナ"];
const EMOJI = ["😀", "🎉", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🚀", "✓"];
const PUNCTUATION = [",", ".", "!", "?", ";", ":", "'s", "n't", "'re", "(", ")", '"', "-", "—", "…"];
const WHITESPACE = ["  ", "   ", "\t", "\n", " \n ", "\n\n"];

const pick = <T>(next: () => number, pool: readonly T[]) => pool[Math.floor(next() * pool.length)];

/** Where a line's pieces come from, with the share of pieces each gives. */
const SOURCES: [number, (next: () => number) => string][] = [
  [0.5, (next) => pick(next, ASCII)],
  [0.1, (next) => pick(next, ACCENTED)],
  [0.08, (next) => pick(next, CJK)],
  [0.06, (next) => pick(next, EMOJI)],
  [0.1, (next) => String(Math.floor(next() * 10 ** (1 + next() * 8)))],
  [0.16, (next) => pick(next, PUNCTUATION)],
];

/** A line of `n` pieces, some capitalized, joined mostly by single spaces and otherwise by runs of whitespace. */
function line(next: () => number, n: number): string {
  const pieces: string[] = [];
  for (let i = 0; i < n; i++) {
    let r = next();
    const [, draw] = SOURCES.find(([share]) => (r -= share) < 0) ?? SOURCES[0];
    let piece = draw(next);
    if (next() < 0.15) piece = piece[0].toUpperCase() + piece.slice(1);
    pieces.push(piece, next() < 0.85 ? " " : pick(next, WHITESPACE));
  }
  return pieces.join("").trimEnd();
}

const corpusRandom = random(7);
const CORPUS = Array.from({ length: 400 }, () => line(corpusRandom, 3 + Math.floor(corpusRandom() * 14)));

// Texts to encode: lines of the corpus's kind (another seed), then edges: empty and blank texts,
// leading and trailing spaces, characters the corpus never had (the byte fallback, <unk>, NFKC's
// ligature and Roman numeral), decomposed accents, space before punctuation (the legacy decode
// clean-up would remove it), and every special or added token written inside the text.
const textRandom = random(11);
const TEXTS = [
  ...Array.from({ length: 80 }, () => line(textRandom, 1 + Math.floor(textRandom() * 20))),
  "",
  " ",
  "   ",
  "\n",
  "\t\t",
  " leading space",
  "trailing space ",
  "  two leading, two trailing  ",
  "Ω ß 𝔘𝔫𝔦 ﬁne Ⅻ 한",
  "cafe\u0301 vs café",
  "hello , world ! it 's here .",
  "1234567890 3.14159 2026-11-30",
  "<|endoftext|>",
  "first<|endoftext|>second <|endoftext|> third",
  "<s>hello</s>",
  " <s> spaced </s> ",
  "<pad><pad>x",
  "<unk> and <mask>",
  "fill the <mask> here",
  "call <tool> now<tool>",
  "<s<|endoftext|>/s>",
];

type Kind = "gpt2" | "llama" | "unigram";

/** A tokenizer folder: the pipeline trained, and fields written over the tokenizer_config.json transformers saved. */
interface Folder {
  kind: Kind;
  config?: Record<string, unknown>;
}

// The folders compared text by text. GPT-2's carries the tokenizer_class of a real GPT-2
// checkpoint; the others the class transformers writes for a tokenizer.json of its own
// (TokenizersBackend: the tokenizer.json pipeline as it is). Llama's config names padding_side
// "left". Three ask for the legacy clean-up of decoded spaces (" ," → ","), which transformers 5
// applies to a Unigram model, and to a BPE model only when the config insists.
const CLEAN_UP = { clean_up_tokenization_spaces: true };
const FORCE_BPE_CLEAN_UP = { ...CLEAN_UP, clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: true };
const FOLDERS: Record<string, Folder> = {
  gpt2: { kind: "gpt2", config: { tokenizer_class: "GPT2Tokenizer" } },
  llama: { kind: "llama" },
  unigram: { kind: "unigram" },
  "gpt2, clean_up_tokenization_spaces (ignored for BPE)": { kind: "gpt2", config: CLEAN_UP },
  "gpt2, clean-up forced for BPE": { kind: "gpt2", config: FORCE_BPE_CLEAN_UP },
  "unigram, clean_up_tokenization_spaces": { kind: "unigram", config: CLEAN_UP },
};
/** Whether transformers 5 cleans up the decoded spaces of `name`. */
const cleansUp = (name: string) => {
  const config = FOLDERS[name].config ?? {};
  const forced = config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output === true;
  return config.clean_up_tokenization_spaces === true && (FOLDERS[name].kind === "unigram" || forced);
};
const NAMES = Object.keys(FOLDERS);

// A Llama 2 checkpoint's tokenizer_config.json names its class, which transformers 5 builds from
// the vocabulary and merges alone, with a pipeline of its own, instead of tokenizer.json's.
const LLAMA_CLASS = "llama, tokenizer_class LlamaTokenizer";
const LLAMA_CLASS_FOLDER: Folder = { kind: "llama", config: { tokenizer_class: "LlamaTokenizer", legacy: false, add_bos_token: true, add_eos_token: false } };

interface Row {
  ids: number[];
  plain: number[];
  tokens: string[];
  decoded: string;
  skipped: string;
  plain_decoded: string;
}
interface Batch {
  ids: number[][];
  mask: number[][];
}
interface Reference {
  special: { bos: number | null; eos: number | null; pad: number | null; unk: number | null };
  vocab_size: number;
  size: number;
  rows: Row[];
  batches: Record<"default" | "left" | "right", Batch>;
  decodes: { ids: number[]; decoded: string; skipped: string }[];
}

/** A run of byte pieces as the Rust ByteFallback decoder reads it: its UTF-8 text, else one U+FFFD per byte. */
function rustByteRun(bytes: number[]): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    return "\uFFFD".repeat(bytes.length);
  }
}

/** A run of byte pieces decoded as UTF-8 with replacement (one U+FFFD per invalid sequence). */
const utf8ByteRun = (bytes: number[]): string => new TextDecoder().decode(Uint8Array.from(bytes));

/**
 * The Llama 2 decoder of `ids` worked out step by step (the special tokens left out when `skip`;
 * "▁" → " "; each run of <0xNN> pieces through `decodeRun`; the pieces joined; one leading space
 * stripped), to tell what each side does with byte pieces that are not valid UTF-8.
 */
function llamaDecode(tok: models.PretrainedTokenizer, ids: number[], skip: boolean, decodeRun: (bytes: number[]) => string): string {
  const special = new Set([tok.unkToken?.id, tok.bosTokenId, tok.eosTokenId, tok.padTokenId]);
  const pieces: string[] = [];
  let run: number[] = [];
  for (const id of ids) {
    if (skip && special.has(id)) continue;
    const token = (tok.idToToken(id) as string).replace(/\u2581/g, " ");
    const byte = /^<0x([0-9A-F]{2})>$/.exec(token);
    if (byte) {
      run.push(parseInt(byte[1], 16));
      continue;
    }
    if (run.length > 0) pieces.push(decodeRun(run));
    run = [];
    pieces.push(token);
  }
  if (run.length > 0) pieces.push(decodeRun(run));
  return pieces.join("").replace(/^ /, "");
}

let root: string;
const reference = new Map<string, Reference>();
const folderOf = (name: string) => path.join(root, name.replace(/[^A-Za-z0-9]+/g, "-"));

/** `[text, ours, theirs]` for every text whose `ours` differs from `theirs`. */
function mismatches<T>(texts: readonly string[], ours: (i: number) => T, theirs: (i: number) => T): [string, T, T][] {
  const out: [string, T, T][] = [];
  texts.forEach((text, i) => {
    if (JSON.stringify(ours(i)) !== JSON.stringify(theirs(i))) out.push([text, ours(i), theirs(i)]);
  });
  return out;
}

/** The rows of a (B, T) int64 Tensor. */
function rowsOf(t: { shape: number[]; toList(): unknown }): number[][] {
  const [batch, width] = t.shape;
  const flat = (t.toList() as (number | bigint)[]).map(Number);
  return Array.from({ length: batch }, (_, b) => flat.slice(b * width, (b + 1) * width));
}

describeHf("tokenizers between torch-lora and Hugging Face tokenizers/transformers", () => {
  beforeAll(() => {
    root = makeTempDir("tl-interop-tok-");
    // One Python process trains, saves and encodes with every folder.
    const folders: [string, Folder][] = [...Object.entries(FOLDERS), [LLAMA_CLASS, LLAMA_CLASS_FOLDER]];
    const answers = hf<Reference>(
      folders.flatMap(([name, { kind, config }]) => [
        { op: "train_tokenizer", kind, config, dir: folderOf(name), corpus: CORPUS, vocab_size: 600 },
        { op: "encode", dir: folderOf(name), texts: TEXTS, random_decodes: 60, seed: 5 },
      ]),
    );
    folders.forEach(([name], i) => reference.set(name, answers[2 * i + 1]));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  const load = (name: string) => models.loadTokenizer(folderOf(name));
  const theirs = (name: string) => reference.get(name) as Reference;

  test.each(NAMES)("%s: the folder transformers saved has the special tokens and sizes transformers reads", (name) => {
    expect(fs.readdirSync(folderOf(name)).sort()).toEqual(["tokenizer.json", "tokenizer_config.json"]);
    const tok = load(name);
    const ref = theirs(name);
    expect({ bos: tok.bosTokenId, eos: tok.eosTokenId, pad: tok.padTokenId, unk: tok.unkToken?.id ?? null }).toEqual(ref.special);
    expect([tok.vocabSize, tok.size]).toEqual([ref.vocab_size, ref.size]);
    // The training learned merges or pieces beyond the single characters: the comparison is not of a trivial vocabulary.
    expect(ref.vocab_size).toBeGreaterThan(300);
  });

  test.each(NAMES)("%s: every text encodes to transformers' ids, with and without special tokens, and to its tokens", (name) => {
    const tok = load(name);
    const rows = theirs(name).rows;
    const ours = TEXTS.map((text) => ({ ids: tok.encode(text), plain: tok.encode(text, { addSpecialTokens: false }), tokens: tok.tokenize(text) }));
    // A documented difference in `tokenize` alone: an added token that takes the space before it
    // (<mask>, lstrip) is the token's own text here, and the text it matched there (" <mask>",
    // which is no token of the vocabulary). Its id is the same on both sides.
    const tokensOf = (row: Row) => row.tokens.map((t) => (t === " <mask>" ? "<mask>" : t));
    if (FOLDERS[name].kind === "unigram") expect(rows[TEXTS.indexOf("fill the <mask> here")].tokens).toContain(" <mask>");
    expect(
      mismatches(
        TEXTS,
        (i) => ours[i],
        (i) => ({ ids: rows[i].ids, plain: rows[i].plain, tokens: tokensOf(rows[i]) }),
      ),
    ).toEqual([]);
    // The special tokens written in the texts were recognised as such on both sides (one id, not their characters).
    const inline = ours[TEXTS.indexOf("first<|endoftext|>second <|endoftext|> third")].plain;
    if (FOLDERS[name].kind === "gpt2") expect(inline.filter((id) => id === tok.eosTokenId)).toHaveLength(2);
    const llama = ours[TEXTS.indexOf("<s>hello</s>")].plain;
    if (FOLDERS[name].kind === "llama") expect([llama[0], llama[llama.length - 1]]).toEqual([tok.bosTokenId, tok.eosTokenId]);
  });

  test.each(NAMES)("%s: the encodings decode to transformers' text, special tokens kept and skipped", (name) => {
    const tok = load(name);
    const rows = theirs(name).rows;
    const ours = (i: number) => ({
      decoded: tok.decode(rows[i].ids),
      skipped: tok.decode(rows[i].ids, { skipSpecialTokens: true }),
      plain_decoded: tok.decode(rows[i].plain),
    });
    expect(mismatches(TEXTS, ours, (i) => ({ decoded: rows[i].decoded, skipped: rows[i].skipped, plain_decoded: rows[i].plain_decoded }))).toEqual([]);
    // The legacy clean-up did apply where transformers applies it, and only there.
    const spaced = rows[TEXTS.indexOf("hello , world ! it 's here .")].plain_decoded;
    expect(spaced).toBe(cleansUp(name) ? "hello, world! it's here." : "hello , world ! it 's here .");
  });

  test.each(NAMES)("%s: random id lists (special, added and byte tokens amid the others) decode to transformers' text", (name) => {
    const tok = load(name);
    const { decodes } = theirs(name);
    expect(decodes).toHaveLength(60);
    const texts = decodes.map((d) => JSON.stringify(d.ids));
    const ours = (i: number) => [tok.decode(decodes[i].ids), tok.decode(decodes[i].ids, { skipSpecialTokens: true })];
    const expected = (i: number) => [decodes[i].decoded, decodes[i].skipped];
    if (FOLDERS[name].kind !== "llama") expect(mismatches(texts, ours, expected)).toEqual([]);
    else {
      // A documented difference: byte-fallback pieces that do not spell valid UTF-8 (which only a
      // model's generation can produce). The Rust decoder turns every byte of such a run into one
      // U+FFFD, valid bytes included; here the run is decoded as UTF-8 with replacement (as
      // TextDecoder and Python's bytes.decode(errors="replace") do): one U+FFFD per invalid
      // sequence, valid bytes kept. The Llama decoder is worked out here both ways: transformers
      // gives the first, torch-lora the second, and they differ on exactly the lists with an invalid run.
      const decodeWith = (decodeRun: (bytes: number[]) => string) => (i: number) =>
        [false, true].map((skip) => llamaDecode(tok, decodes[i].ids, skip, decodeRun));
      expect(mismatches(texts, decodeWith(rustByteRun), expected)).toEqual([]);
      expect(mismatches(texts, ours, decodeWith(utf8ByteRun))).toEqual([]);
      const invalid = mismatches(texts, decodeWith(utf8ByteRun), decodeWith(rustByteRun)).map(([t]) => t);
      expect(invalid.length).toBeGreaterThan(0);
      expect(invalid.length).toBeLessThan(texts.length);
      expect(mismatches(texts, ours, expected).map(([t]) => t)).toEqual(invalid);
    }
  });

  test.each(NAMES)("%s: encodeBatch gives transformers' padded ids and attention masks, on the config's side, the left and the right", (name) => {
    const tok = load(name);
    const { batches } = theirs(name);
    for (const side of ["default", "left", "right"] as const) {
      const ours = tok.encodeBatch(TEXTS, side === "default" ? {} : { paddingSide: side });
      const [ids, mask] = [rowsOf(ours.inputIds), rowsOf(ours.attentionMask)];
      const batch = batches[side];
      expect([side, ours.inputIds.shape]).toEqual([side, [TEXTS.length, batch.ids[0].length]]);
      expect([
        side,
        mismatches(
          TEXTS,
          (i) => [ids[i], mask[i]],
          (i) => [batch.ids[i], batch.mask[i]],
        ),
      ]).toEqual([side, []]);
    }
    // Some rows are padded, on the side asked for; Llama's config pads on the left by default.
    expect(rowsOf(tok.encodeBatch(TEXTS, { paddingSide: "left" }).attentionMask).some((row) => row[0] === 0)).toBe(true);
    expect(batches.default).toEqual(FOLDERS[name].kind === "llama" ? batches.left : batches.right);
  });

  test("a folder naming tokenizer_class LlamaTokenizer: transformers 5 builds the pipeline of its class, torch-lora reads tokenizer.json's; they differ only where the two pipelines do", () => {
    // A documented difference. transformers 5's LlamaTokenizer keeps the vocabulary and merges of
    // tokenizer.json and replaces the rest: a Metaspace pre-tokenizer that prepends "▁" to the
    // text's first piece only, and not when the text starts with a space. tokenizer.json (as
    // transformers converts Llama 2's SentencePiece model, and as the tokenizers library, transformers
    // 4 and transformers.js read it) prepends "▁" to every piece between special tokens. So the
    // ids differ on texts that start with a space or hold a special token, and only there.
    const tok = load(LLAMA_CLASS);
    const rows = theirs(LLAMA_CLASS).rows;
    const special = ["<s>", "</s>", "<unk>", "<pad>"];
    const differing = TEXTS.filter((t) => t.startsWith(" ") || special.some((s) => t.includes(s)));
    const ids = mismatches(
      TEXTS,
      (i) => [tok.encode(TEXTS[i]), tok.encode(TEXTS[i], { addSpecialTokens: false })],
      (i) => [rows[i].ids, rows[i].plain],
    );
    expect(ids.map(([t]) => t)).toEqual(differing);
    // Ours is tokenizer.json's reading, the one transformers gives where the config names no class of its own.
    const plain = theirs("llama").rows;
    expect(
      mismatches(
        TEXTS,
        (i) => tok.encode(TEXTS[i]),
        (i) => plain[i].ids,
      ),
    ).toEqual([]);
    // The decoders agree: the ids transformers 5 gives decode to its text here too.
    const decodes = mismatches(
      TEXTS,
      (i) => [tok.decode(rows[i].ids), tok.decode(rows[i].ids, { skipSpecialTokens: true })],
      (i) => [rows[i].decoded, rows[i].skipped],
    );
    expect(decodes).toEqual([]);
  });
});
