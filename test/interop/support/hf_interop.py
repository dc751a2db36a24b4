"""
transformers and PEFT themselves, driven by the interop tests: checkpoints and adapters written
by one side are read by the other and must give the same numbers. Runs in the environment of
scripts/lib/hf-reference.js (a pip-installed PyTorch with transformers and PEFT).

Reads a JSON list of requests on stdin and prints a JSON list of answers, one per request (one
process per list: importing transformers takes seconds).
"""
import json
import os
import sys
import warnings

import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

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


def merge(req):
    """PEFT's merge_and_unload of an adapter into its base: the merged state dict."""
    model, _ = load_base(req["dir"])
    merged = PeftModel.from_pretrained(model, req["adapter"]).merge_and_unload()
    return {"weights": {k: flat(v) for k, v in merged.state_dict().items() if k in req["keys"]}}


def versions(_req):
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


OPS = {"make": make, "forward": forward, "generate": generate, "peft_adapter": peft_adapter, "merge": merge, "versions": versions}

if __name__ == "__main__":
    # default=sorted: PEFT's configs hold sets (target_modules).
    print(json.dumps([OPS[r["op"]](r) for r in json.loads(sys.stdin.read())], default=sorted))
