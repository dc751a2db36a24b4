"""
transformers and PEFT themselves, driven by the interop tests: checkpoints and adapters written
by one side are read by the other and must give the same numbers. Runs in the environment of
scripts/lib/hf-reference.js (a pip-installed PyTorch with transformers and PEFT).

Reads a JSON list of requests on stdin and prints a JSON list of answers, one per request (one
process per list: importing transformers takes seconds).
"""
import json
import os
import random
import sys
import warnings

import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from tokenizers.models import BPE, Unigram  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402

torch.set_num_threads(1)


def flat(t):
    return t.detach().double().reshape(-1).tolist()


def load_base(folder, dtype="float32"):
    """The checkpoint in `folder` with eager attention, and the keys transformers found missing or unexpected."""
    model, info = AutoModelForCausalLM.from_pretrained(
        folder, dtype=getattr(torch, dtype), attn_implementation="eager", output_loading_info=True
    )
    model.eval()
    return model, {"missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"])}


def make(req):
    """A random model of `config` written with save_pretrained (in `dtype`, default float32); every parameter
    (norms and biases too) perturbed."""
    torch.manual_seed(req.get("seed", 0))
    config = AutoConfig.for_model(**req["config"])
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.to(getattr(torch, req.get("dtype", "float32")))
    kwargs = {"max_shard_size": req["max_shard_size"]} if req.get("max_shard_size") else {}
    model.save_pretrained(req["dir"], **kwargs)
    return {}


def logits_of(model, req):
    """The logits of a left-padded batch, with positions counted over real tokens as transformers' generate does
    (torch-lora's forward does so from the attention mask; transformers' forward would count from 0 in every row)."""
    ids = torch.tensor(req["ids"], dtype=torch.int64)
    mask = torch.tensor(req["mask"], dtype=torch.int64)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits


def loss_of(logits, labels):
    labels = torch.tensor(labels, dtype=torch.int64)
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1), ignore_index=-100)


def lora_grads(model):
    """The gradients of every LoRA factor, by PEFT parameter name without the base_model.model. prefix."""
    out = {}
    for name, p in model.named_parameters():
        if "lora_" in name and p.grad is not None:
            out[name[len("base_model.model."):]] = flat(p.grad)
    return out


def forward(req):
    """Logits of a batch (and, with labels, the loss and the LoRA factors' gradients) of a checkpoint, with an adapter if given."""
    model, info = load_base(req["dir"], req.get("dtype", "float32"))
    answer = {"loading": info}
    if req.get("adapter"):
        model = PeftModel.from_pretrained(model, req["adapter"], is_trainable=bool(req.get("labels")))
        answer["adapter_config"] = model.peft_config["default"].to_dict()
    with torch.set_grad_enabled(bool(req.get("labels"))):
        logits = logits_of(model, req)
        answer.update({"logits": flat(logits), "shape": list(logits.shape)})
        if req.get("labels"):
            loss = loss_of(logits, req["labels"])
            loss.backward()
            answer.update({"loss": loss.item(), "grads": lora_grads(model)})
    return answer


def generate(req):
    """transformers' greedy generate with its KV cache, on a left-padded batch."""
    model, _ = load_base(req["dir"])
    ids = torch.tensor(req["ids"], dtype=torch.int64)
    mask = torch.tensor(req["mask"], dtype=torch.int64)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=req["steps"], min_new_tokens=req["steps"], do_sample=False, pad_token_id=0
        )
    return {"ids": out.tolist()}


def peft_adapter(req):
    """PEFT's get_peft_model on the checkpoint with `lora` (LoraConfig's fields), random B too, and any
    `more` adapters (name -> fields) beside it; saved with save_pretrained (the others in subfolders).
    Answers the logits with the first adapter active, and `by_adapter`: the logits with each active."""
    model, _ = load_base(req["dir"])
    torch.manual_seed(req.get("seed", 0))
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, **req["lora"]))
    for name, fields in req.get("more", {}).items():
        model.add_adapter(name, LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, **fields))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.2)
    model.save_pretrained(req["out"])
    model.eval()
    by_adapter = {}
    with torch.no_grad():
        for name in ["default", *req.get("more", {})]:
            model.set_adapter(name)
            by_adapter[name] = flat(logits_of(model, req))
        model.set_adapter("default")
        logits = logits_of(model, req)
    return {"logits": flat(logits), "shape": list(logits.shape), "by_adapter": by_adapter}


def train(req):
    """`steps` AdamW steps (torch.optim.AdamW with `adamw`'s settings) of the adapter in `adapter` on the batch's
    shifted loss; answers the losses and the factors after training, by PEFT parameter name."""
    model, _ = load_base(req["dir"])
    model = PeftModel.from_pretrained(model, req["adapter"], is_trainable=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, **req["adamw"])
    losses = []
    for _ in range(req["steps"]):
        opt.zero_grad()
        loss = loss_of(logits_of(model, req), req["labels"])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    factors = {name[len("base_model.model."):]: flat(p) for name, p in model.named_parameters() if p.requires_grad}
    return {"losses": losses, "factors": factors}


def merge(req):
    """PEFT's merge_and_unload of an adapter into its base: the merged state dict."""
    model, _ = load_base(req["dir"])
    merged = PeftModel.from_pretrained(model, req["adapter"]).merge_and_unload()
    return {"weights": {k: flat(v) for k, v in merged.state_dict().items() if k in req["keys"]}}


def trained_model(corpus, trainer, pre_tokenizer, model):
    """The vocabulary and merges (BPE) or pieces (Unigram) that `trainer` learns from `corpus`, as the tokenizer.json model."""
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizer
    tok.train_from_iterator(corpus, trainer)
    return json.loads(tok.to_str())["model"]


def gpt2_tokenizer(corpus, vocab_size):
    """GPT-2's pipeline: byte-level BPE, <|endoftext|> at id 0, and a non-special added token past the vocabulary."""
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([AddedToken("<tool>", special=False, normalized=False)])
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    return tok, special


def llama_tokenizer(corpus, vocab_size):
    """Llama 2's pipeline (SentencePiece BPE as transformers converts it): <unk> <s> </s>, the 256 byte-fallback
    pieces <0x00>..<0xFF>, then the learned pieces; the Prepend/Replace normalizer, <s> added in front, <pad> added."""
    learned = trained_model(
        corpus,
        trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always"),
        BPE(),
    )
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for piece in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    # tokenizers ≥ 0.20 writes a merge as a pair, older versions as one "a b" string.
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learned["merges"]]
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in ["<unk>", "<s>", "</s>", "<pad>"]])
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "padding_side": "left"}
    return tok, special


def unigram_tokenizer(corpus, vocab_size):
    """T5's pipeline: a Unigram model behind NFKC and a collapse of space runs, the Metaspace pre-tokenizer and
    decoder, </s> appended; <mask> an added special token that takes the space before it (lstrip)."""
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.train_from_iterator(corpus, trainer)
    eos = ("</s>", tok.token_to_id("</s>"))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[eos])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False)])
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    return tok, special


TOKENIZERS = {"gpt2": gpt2_tokenizer, "llama": llama_tokenizer, "unigram": unigram_tokenizer}


def train_tokenizer(req):
    """A tokenizer of `kind` trained with the tokenizers library on `corpus`, saved by transformers'
    PreTrainedTokenizerFast.save_pretrained into `dir` (tokenizer.json and tokenizer_config.json), then the fields
    of `config` written over those of tokenizer_config.json (a real checkpoint's tokenizer_class, say)."""
    tok, special = TOKENIZERS[req["kind"]](req["corpus"], req["vocab_size"])
    PreTrainedTokenizerFast(tokenizer_object=tok, **special).save_pretrained(req["dir"])
    if req.get("config"):
        path = os.path.join(req["dir"], "tokenizer_config.json")
        with open(path) as f:
            config = json.load(f)
        with open(path, "w") as f:
            json.dump({**config, **req["config"]}, f, indent=2)
    return {"files": sorted(os.listdir(req["dir"]))}


def encode(req):
    """transformers' AutoTokenizer of `dir` on `texts`: ids with and without special tokens, tokens, decodes with
    and without special tokens, padded batches on the config's padding side, on the left and on the right (padding
    with eos where no pad token is named, as torch-lora does), and the decodes of `random_decodes` random id lists."""
    tok = AutoTokenizer.from_pretrained(req["dir"])
    info = {
        "class": type(tok).__name__,
        "special": {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id, "unk": tok.unk_token_id},
        "vocab_size": tok.vocab_size,
        "size": len(tok),
        "padding_side": tok.padding_side,
    }
    rows = []
    for text in req["texts"]:
        ids = tok.encode(text)
        plain = tok.encode(text, add_special_tokens=False)
        rows.append(
            {
                "ids": ids,
                "plain": plain,
                "tokens": tok.tokenize(text),
                "decoded": tok.decode(ids),
                "skipped": tok.decode(ids, skip_special_tokens=True),
                "plain_decoded": tok.decode(plain),
            }
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    batches = {}
    for side in ["default", "left", "right"]:
        batch = tok(req["texts"], padding=True, **({} if side == "default" else {"padding_side": side}))
        batches[side] = {"ids": batch["input_ids"], "mask": batch["attention_mask"]}
    # Id lists no text encodes to, as a model may generate: special and byte tokens amid the others.
    rng = random.Random(req.get("seed", 0))
    random_ids = [[rng.randrange(len(tok)) for _ in range(rng.randint(1, 16))] for _ in range(req.get("random_decodes", 0))]
    decodes = [
        {"ids": ids, "decoded": tok.decode(ids), "skipped": tok.decode(ids, skip_special_tokens=True)} for ids in random_ids
    ]
    return {**info, "rows": rows, "batches": batches, "decodes": decodes}


def versions(_req):
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


OPS = {
    "make": make,
    "forward": forward,
    "generate": generate,
    "peft_adapter": peft_adapter,
    "merge": merge,
    "train": train,
    "versions": versions,
    "train_tokenizer": train_tokenizer,
    "encode": encode,
}

if __name__ == "__main__":
    # default=sorted: PEFT's configs hold sets (target_modules).
    print(json.dumps([OPS[r["op"]](r) for r in json.loads(sys.stdin.read())], default=sorted))
