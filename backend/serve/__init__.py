"""A local OpenAI-compatible server: one base model, many LoRA adapters, chosen per request.

``AdapterHost`` holds the model (host.py), ``protocol`` checks requests and shapes responses,
``http`` serves them. Importing this package does not import torch; building a host does.
"""
from .host import AdapterHost, Generation
from .http import RunningServer, make_server, start_server
from .protocol import ApiError, SamplingParams

__all__ = ["AdapterHost", "Generation", "ApiError", "SamplingParams", "RunningServer", "make_server",
           "start_server"]
