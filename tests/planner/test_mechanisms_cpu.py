"""The memory model's mechanisms, checked on real transformers + PEFT training steps on the CPU.

A small Llama-architecture model runs two real AdamW steps under a tracker of live tensor
bytes (tests/planner/livebytes.py). The planner's prediction for the same config, minus the
CUDA-only cuBLAS workspaces, must match. Cases are chosen where CPU and CUDA kernels save the
same tensors (dropout 0: on the CPU dropout keeps an fp32 mask, on CUDA a 1-byte one; the
bitsandbytes CPU path differs from CUDA, so QLoRA is covered by the H100 calibration instead).
"""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from planner import Job, estimate  # noqa: E402
from planner.spec import spec_from_config  # noqa: E402

from .livebytes import LiveBytes  # noqa: E402

SHAPES = {
    # 128k-vocab-like ratio: the logits dominate (peak in the loss backward)
    "big-vocab": dict(hidden_size=256, intermediate_size=896, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=2, head_dim=32, vocab_size=16000, tie_word_embeddings=False),
    # Mistral/Phi-3-like small vocabulary: layers and the optimizer matter more
    "small-vocab": dict(hidden_size=512, intermediate_size=1792, num_hidden_layers=4, num_attention_heads=8,
                        num_key_value_heads=2, head_dim=64, vocab_size=4000, tie_word_embeddings=False),
}
CASES = [
    ("big-vocab", "lora", 512, 4, True, "all-linear"),
    ("big-vocab", "lora", 128, 2, False, "all-linear"),
    ("big-vocab", "full", 256, 2, True, "all-linear"),
    ("big-vocab", "full", 128, 1, False, "all-linear"),
    ("small-vocab", "lora", 512, 4, True, "all-linear"),
    ("small-vocab", "lora", 512, 2, True, "q_proj,v_proj"),
    ("small-vocab", "lora", 128, 2, False, "all-linear"),
    ("small-vocab", "full", 256, 2, True, "all-linear"),
    # pure bf16 full fine-tuning (no autocast): linears share their saved inputs
    ("big-vocab", "full-bf16", 512, 4, False, "all-linear"),
    ("small-vocab", "full-bf16", 512, 4, False, "all-linear"),
]


def measure(shape, mode, seq, batch, ckpt, targets, autocast):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**shape)
    cfg._attn_implementation = "sdpa"
    model = transformers.AutoModelForCausalLM.from_config(
        cfg, dtype=torch.bfloat16 if (mode == "lora" or not autocast) else torch.float32)
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        if mode == "lora":
            model.enable_input_require_grads()
    if mode == "lora":
        model = peft.get_peft_model(model, peft.LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
            target_modules=targets if targets == "all-linear" else targets.split(",")))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    model.train()
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    tracker = LiveBytes(existing=[*model.parameters(), *model.buffers()])
    with tracker:
        for _ in range(2):  # the second step has the optimizer states: steady state
            tracker.reset_peak()
            if mode == "full" and autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids).loss
            else:
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return tracker.peak


@pytest.mark.slow
@pytest.mark.parametrize("name, mode, seq, batch, ckpt, targets", CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_prediction_matches_live_bytes_on_cpu(name, mode, seq, batch, ckpt, targets):
    precision = "bf16" if mode == "full-bf16" else None
    mode = "full" if mode == "full-bf16" else mode
    measured = measure(SHAPES[name], mode, seq, batch, ckpt, targets, autocast=precision is None)
    spec = spec_from_config({**SHAPES[name], "model_type": "llama"}, name=name)
    est = estimate(spec, Job(mode=mode, precision=precision, seq_len=seq, batch_size=batch, gradient_checkpointing=ckpt,
                             lora_dropout=0.0, lora_targets=targets))
    predicted = est.peak_allocated_bytes - est.breakdown["cuBLAS workspaces"]
    assert predicted == pytest.approx(measured, rel=0.03), est.phase
