"""Quantised safetensors checkpoints read as the float model they stand for, dequantised while streaming.

One module per format behind `base.QuantFormat` (`fp8`, `gptq`, `awq`, `compressed`, `bnb`, `mxfp4`), the explicit
table of them in `registry`, and `config` for `quantization_config`. `CheckpointReader` asks
`quantized_layout` once, at open time, and then serves each quantised layer as one logical `...weight`.
"""

from lineage.io.quant.base import QuantTensorInfo
from lineage.io.quant.registry import FORMATS, QuantLayout, quantized_layout

__all__ = ["FORMATS", "QuantLayout", "QuantTensorInfo", "quantized_layout"]
