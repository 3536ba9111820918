"""The performance core: per-op FLOPs and bytes of a step, and their time on a GPU (a roofline whose
efficiencies are data). Pure and light (csv + dataclasses); training time and serving speed both call it.

Hardware: ``planner.hardware.gpu("H100")`` -> ``Gpu`` (dense TFLOPS per precision, bandwidth, NVLink).

Building ops (planner.perf.ops; every builder returns ``Op`` with ``flops``, ``bytes``, kernel ``path``):
  ``ModelDims.from_spec(spec)``                 shapes of a ModelSpec (or build ``ModelDims(...)`` directly)
  ``linear(name, tokens, d_in, d_out, weight_bytes=2)``          one GEMM
  ``attention(name, batch, q_len, kv_len, heads, kv_heads, head_dim, kernel="flash"|"math")``
  ``layer_forward_ops(dims, batch, q_len, kv_len)``              one decoder layer's forward
  ``prefill_ops(dims, batch, prompt_len, weight_bytes=2)``        a serving prefill step (all layers + LM head)
  ``decode_ops(dims, batch, context_len, weight_bytes=2, kv_bytes=2)``  a serving decode step
  ``training_step_ops(dims, batch, seq_len, Method(mode))``      a training step (planner.perf.training)
  ``dims.sharded(tp)``                                            one GPU's share under tensor parallelism
  ``dataset_speed(dims, Method(mode), gpu, lengths=..., seq_len, batch, packing)``  tokens/s on variable-length
      data: dynamic padding per batch or TRL packing (planner.perf.training)
Timing (planner.perf.roofline):
  ``op_time(op, gpu)`` -> ``OpTime``; ``step_time(ops, gpu)`` -> ``StepTime(seconds, flops, bytes, by_kind)``
  ``linear_time(...)`` / ``attention_time(...)``: one op's seconds, for quick calls.
Communication (planner.perf.comm): ``comm_time(strategy, ...)`` per training step over a link, and
``tensor_parallel_seconds(tokens, hidden, layers, tp, link_gb_s)`` for a TP serving step; the link's
bandwidth is ``planner.hardware.link_bandwidth(link_for(interconnect, gpus, machines, gpu), gpu)``.

Example (serving)::

    from planner import hardware, perf
    dims = perf.ModelDims.from_spec(spec)
    t = perf.step_time(perf.decode_ops(dims, batch=32, context_len=2048), hardware.gpu("H100")).seconds
"""
from __future__ import annotations

from .comm import comm_time, tensor_parallel_seconds
from .ops import (ModelDims, Op, attention, attention_pairs, decode_ops, elementwise, head_ops, layer_forward_ops,
                  linear, prefill_ops)
from .roofline import Efficiency, OpTime, StepTime, efficiency, load_efficiencies, op_time, step_time


def linear_time(gpu, tokens: int, d_in: int, d_out: int, *, weight_bytes: float = 2, precision: str = "bf16") -> float:
    """Seconds of one GEMM (tokens x d_in) @ (d_in x d_out) on ``gpu``."""
    return op_time(linear("linear", tokens, d_in, d_out, weight_bytes=weight_bytes, precision=precision), gpu).seconds


def attention_time(gpu, batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int, head_dim: int, *,
                   kernel: str = "flash", kv_bytes: float = 2, backward: bool = False) -> float:
    """Seconds of one causal attention call on ``gpu``."""
    return op_time(attention("attention", batch, q_len, kv_len, heads, kv_heads, head_dim, kernel=kernel,
                             kv_bytes=kv_bytes, backward=backward), gpu).seconds


__all__ = ["comm_time", "tensor_parallel_seconds", "Efficiency", "ModelDims", "Op", "OpTime", "StepTime", "attention", "attention_pairs", "attention_time",
           "decode_ops", "efficiency", "elementwise", "head_ops", "layer_forward_ops", "linear", "linear_time",
           "load_efficiencies", "op_time", "prefill_ops", "step_time"]
