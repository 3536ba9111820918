"""A local OpenAI-compatible server: one base model, many LoRA adapters, chosen per request, batched.

``AdapterHost`` holds the model (host.py), ``protocol`` holds the request models, ``batching``
generates requests together across adapters, ``app`` is the FastAPI app, ``http`` runs it with
uvicorn, ``vllm_exec`` hands serving to vLLM. Importing this package does not import torch.
"""
from .host import AdapterHost
from .protocol import ApiError, SamplingParams


def __getattr__(name: str):  # the HTTP stack (FastAPI, uvicorn) only when asked for
    if name in ("RunningServer", "ServerOptions", "make_server", "start_server"):
        from . import http
        return getattr(http, name)
    if name == "ServeSettings":
        from .app import ServeSettings
        return ServeSettings
    raise AttributeError(name)


__all__ = ["AdapterHost", "ApiError", "SamplingParams", "RunningServer", "ServerOptions", "ServeSettings",
           "make_server", "start_server"]
