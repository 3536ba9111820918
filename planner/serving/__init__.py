"""The serving planner (issue 21): an inference engine's memory layout, speed under a workload, and the
figures its startup log prints. Pure planner core: plain values in, frozen dataclasses out."""
