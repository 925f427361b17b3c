"""Execution on onnxruntime (compile/run/bench): arrives with the compile issue."""
